"""A throw-away meta_deployer project for tests: its own repos/, workspace and work area."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ASSETS = '''
import dagster as dg

{assets}

defs = dg.Definitions(assets=[{names}])
'''


def definitions_py(*assets: str) -> str:
    """A small Dagster project with one trivial asset per name."""
    body = "\n".join(f"@dg.asset\ndef {a}() -> int:\n    return {i}\n" for i, a in enumerate(assets))
    return ASSETS.format(assets=body, names=", ".join(assets))


BROKEN = "import dagster as dg\nimport no_such_module_anywhere\n\ndefs = dg.Definitions()\n"


@dataclass
class Project:
    root: Path

    @property
    def repos(self) -> Path:
        return self.root / "repos"

    @property
    def workspace(self) -> Path:
        return self.root / "workspace" / "workspace.yaml"

    @property
    def work(self) -> Path:
        return self.root / ".meta_deployer"

    def env(self) -> dict[str, str]:
        return {
            "META_DEPLOYER_ROOT": str(self.root),
            "META_DEPLOYER_REPOS_DIR": str(self.repos),
            "META_DEPLOYER_WORKSPACE": str(self.workspace),
            "META_DEPLOYER_WORK_DIR": str(self.work),
            "META_DEPLOYER_PLATFORM": "dev",
            "DAGSTER_HOME": str(self.root / "dagster_home"),
        }

    def workspace_bytes(self) -> bytes:
        return self.workspace.read_bytes() if self.workspace.exists() else b""


def run_make(project: Project, *args: str, env: dict[str, str] | None = None, check: bool = True,
             timeout: float = 900) -> "subprocess.CompletedProcess[str]":
    """Run a Make target of this repository against ``project`` (as a user would)."""
    from conftest import ROOT

    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env={**os.environ, **project.env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"make {' '.join(args)} failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}")
    return result


@contextmanager
def dagster_dev(project: Project, env: dict[str, str] | None = None) -> Iterator[str]:
    """A real `dagster dev` (webserver + daemon) on the project's generated workspace; yields its URL."""
    from conftest import ROOT, free_port, wait_for_port
    from dagster_ui import wait_for_location

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {**os.environ, **project.env(), **(env or {}), "DAGSTER_WEBSERVER_URL": url}
    run_make(project, "install", env=env)
    subprocess.run([sys.executable, "-m", "meta_deployer.cli", "render-workspace"], check=True, capture_output=True, env=full_env)
    with open(project.root / "dagster-dev.log", "w") as log:
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "dagster"), "dev", "--use-legacy-code-server-behavior",
             "-w", str(project.workspace), "-h", "127.0.0.1", "-p", str(port)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(port, timeout=120, proc=proc)
            wait_for_location(url, "meta_deployer")
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
