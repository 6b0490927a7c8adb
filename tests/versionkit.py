"""One throw-away virtualenv per supported Dagster release, built once and shared by the tests.

``dagster_venv(release)`` makes (with uv) ``<tmp>/meta_deployer-dagster-<release>-py<X.Y>`` holding
``dagster==<release>`` and the paired ``dagster-aws``, and reuses it while its marker says it is
whole (in this session and the next: uv's own cache makes a rebuild take seconds anyway). It needs
the package index (through the proxy in CI): when it cannot be reached the test fails with a message
saying so; nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from filelock import FileLock

from meta_deployer import versions

ROOT = Path(__file__).resolve().parent.parent
READY = ".ready"
#: Install times of this session's virtualenvs (seconds), for the report at the end of the run.
INSTALL_TIMES: dict[str, float] = {}


def venv_root() -> Path:
    return Path(os.environ.get("META_DEPLOYER_TEST_VENVS") or tempfile.gettempdir())


def dagster_venv(release: str) -> Path:
    """A virtualenv with ``dagster==release`` and its dagster-aws; its python's path is ``<venv>/bin/python``."""
    from uv import find_uv_bin

    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = venv_root() / f"meta_deployer-dagster-{release}-py{py}"
    with FileLock(str(venv) + ".lock", timeout=900):
        if (venv / READY).is_file():
            return venv
        started = time.monotonic()
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
        env.pop("VIRTUAL_ENV", None)
        made = subprocess.run([find_uv_bin(), "venv", "--quiet", "--python", sys.executable, str(venv)],
                              capture_output=True, text=True, env=env, timeout=120)
        assert made.returncode == 0, f"uv venv failed for dagster {release}:\n{made.stderr}"
        wanted = [f"dagster=={release}", f"dagster-aws=={versions.library_version(release)}"]
        done = subprocess.run([find_uv_bin(), "pip", "install", "--python", str(venv / "bin" / "python"), *wanted],
                              capture_output=True, text=True, env=env, timeout=600)
        if done.returncode != 0:
            pytest.fail(
                f"could not install {' '.join(wanted)} into {venv}: these tests need the package index "
                f"(PyPI, through the proxy in CI). uv said:\n{done.stderr[-3000:]}",
                pytrace=False,
            )
        (venv / READY).write_text(release)
        INSTALL_TIMES[release] = round(time.monotonic() - started, 1)
        return venv


def runtime_env(venv: Path, **extra: str) -> dict[str, str]:
    """An environment running ``venv``'s python with only the runtime package importable from this checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "DAGSTER_HOME") and not k.startswith("META_DEPLOYER_")}
    pylib = Path(tempfile.gettempdir()) / f"meta_deployer-runtime-only-{os.getpid()}"
    if not pylib.is_dir():
        pylib.mkdir(exist_ok=True)
        (pylib / "meta_deployer_runtime").symlink_to(ROOT / "meta_deployer_runtime")
    return {**env, "PYTHONPATH": str(pylib), **extra}


def validator_output(python: str | Path, project: Path, source: str = "definitions.py", **extra: str) -> tuple[list[str], int]:
    """Run the real validator (``meta_deployer_runtime.validate``) with ``python`` on ``project``'s ``source``:
    (its output lines, stdout then stderr, as a build or task log shows them; its exit code)."""
    venv = Path(python).parent.parent
    done = subprocess.run(
        [str(python), "-m", "meta_deployer_runtime.validate"], cwd=project, capture_output=True, text=True,
        timeout=300, env=runtime_env(venv, META_DEPLOYER_CODE_SOURCE=f"python_file:{source}", META_DEPLOYER_REPO="sales",
                                     META_DEPLOYER_PREFIX="repos/sales",
                                     META_DEPLOYER_STORAGE_DIR=str(project / "storage"), **extra),
    )
    return done.stdout.splitlines() + done.stderr.splitlines(), done.returncode


def empty_venv() -> Path:
    """A virtualenv with no packages at all (no dagster): where the validator reports ``none``."""
    from uv import find_uv_bin

    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = venv_root() / f"meta_deployer-empty-py{py}"
    with FileLock(str(venv) + ".lock", timeout=300):
        if not (venv / READY).is_file():
            env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
            env.pop("VIRTUAL_ENV", None)
            made = subprocess.run([find_uv_bin(), "venv", "--quiet", "--python", sys.executable, str(venv)],
                                  capture_output=True, text=True, env=env, timeout=120)
            assert made.returncode == 0, made.stderr
            (venv / READY).write_text("empty")
    return venv
