"""Which Dagster release a repository asks for: one answer for every platform.

The ``dev`` platform installs what this resolves; the image builders (``images.py``) build a
templated repo ``FROM`` the base image of the release found here. Both read the repo's dependency
files the same way:

- an exact static pin (``dagster==1.11.16`` in requirements.txt or a static pyproject.toml) is the
  answer, with no resolver run (:func:`static_dagster_pin`);
- otherwise the requirements are resolved with ``uv pip compile`` (:func:`compile_requirements`), run
  without the deployer's secrets in its environment (it reads what the repo names, and may run its
  ``setup.py``); a dagster pulled in by another package (``dagster-dbt==0.27.5``) counts too;
- a repo whose requirements name no dagster at all gets the deployer's own release (``pyproject.toml``).

Then :func:`requested_release` checks the window (``versions.check_supported``): a release outside it
fails here, before anything is installed or built.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from meta_deployer import versions
from meta_deployer.errors import BuildError
from meta_deployer.gitops import redact
from meta_deployer_runtime.contract import without_deployer_secrets

COMPILE_TIMEOUT_S = 300
_TAIL_LINES = 30
_EXACT = re.compile(r"^\s*dagster\s*(?:\[[^\]]*\])?\s*===?\s*([0-9][A-Za-z0-9.+!-]*)\s*(?:;.*)?$", re.IGNORECASE)
_PYTHON_IMAGE = re.compile(r"(?:^|/)python:(\d+\.\d+)")


def normal(name: str) -> str:
    """A distribution name normalized (PEP 503): ``Dagster_AWS`` -> ``dagster-aws``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def uv(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run uv without the deployer's secrets in its environment, never downloading a Python."""
    from uv import find_uv_bin

    env = {**without_deployer_secrets(os.environ), "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run([find_uv_bin(), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def compile_requirements(
    files: Sequence[Path], what: str, *, python: str | None = None, python_version: str | None = None,
    secrets: Iterable[str | None] = (),
) -> dict[str, str]:
    """``files`` (requirements.txt, pyproject.toml, setup.py) resolved: ``{normalized name: version}``.

    ``python``: the interpreter to resolve for (default: this one); ``python_version`` (``3.12``)
    instead, for an image's Python. BuildError naming ``what`` when they cannot be resolved.
    """
    if not files:
        return {}
    target = ["--python-version", python_version] if python_version else ["--python", python or sys.executable]
    try:
        done = uv("pip", "compile", "--quiet", "--no-header", "--no-annotate", *target,
                  *(str(f) for f in files), timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BuildError(f"resolving the dependencies of {what} took over {COMPILE_TIMEOUT_S}s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-_TAIL_LINES:])
        raise BuildError(
            f"the dependencies of {what} cannot be resolved (check its requirements.txt or "
            f"pyproject.toml):\n{redact(tail, tuple(secrets))}"
        )
    pinned = {}
    for line in done.stdout.splitlines():
        name, sep, version = line.split(";")[0].split("#")[0].strip().partition("==")
        if sep:
            pinned[normal(name.split("[")[0].strip())] = version.strip()
    return pinned


def static_dagster_pin(requirements: Iterable[str]) -> str | None:
    """The release of an exact ``dagster==X`` among requirement lines, else None."""
    for line in requirements:
        match = _EXACT.match(line.split(" #", 1)[0])
        if match:
            return match.group(1)
    return None


def requested_release(where: str, resolved: Mapping[str, str]) -> str:
    """The dagster release of ``resolved`` (the deployer's own when it names none), checked against the
    window: UnsupportedDagsterVersion naming ``where``, the release, the window and the fix."""
    return versions.check_supported(where, resolved.get("dagster", versions.pin("dagster")))


def release_of_lines(
    name: str, requirements: Sequence[str], base_image: str, secrets: Iterable[str | None] = ()
) -> str:
    """The dagster release a templated image of repo ``name`` gets from its requirement lines (what
    ``images._dependency_plan`` collected), resolved for the Python of ``base_image`` when its name
    says (``python:3.12-slim``); checked against the window."""
    where = f"{name} (its requirements)"
    pinned = static_dagster_pin(requirements)
    if pinned is not None:
        return requested_release(where, {"dagster": pinned})
    if not requirements:
        return requested_release(where, {})
    match = _PYTHON_IMAGE.search(base_image)
    with tempfile.TemporaryDirectory(prefix="meta-deployer-resolve-") as folder:
        path = Path(folder) / "requirements.txt"
        path.write_text("\n".join(requirements) + "\n")
        resolved = compile_requirements(
            [path], name, python_version=match.group(1) if match else None, secrets=secrets
        )
    return requested_release(where, resolved)
