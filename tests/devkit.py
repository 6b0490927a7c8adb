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
    """What `make dev` runs (`meta-deployer dev`: the dev code servers, the webserver and the daemon) on
    the project's generated workspace; yields its URL. On exit it stops them as Ctrl-C would."""
    from conftest import ROOT, free_port, wait_for_port
    from dagster_ui import wait_for_location

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {**os.environ, **project.env(), **(env or {}), "DAGSTER_WEBSERVER_URL": url}
    run_make(project, "install", env=env)
    with open(project.root / "dagster-dev.log", "w") as log:
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "meta-deployer"), "dev",
             "-w", str(project.workspace), "-H", "127.0.0.1", "-p", str(port)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(port, timeout=180, proc=proc)
            wait_for_location(url, "meta_deployer")
            yield url
        finally:
            stop_dev(proc)


def stop_dev(proc: "subprocess.Popen") -> None:
    """Stop `meta-deployer dev` as Ctrl-C does (it stops the webserver, the daemon and the code servers)."""
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def stop_dev_servers(project: Project) -> None:
    """Stop every dev code server a test's deploys left running (they outlive the deploy by design)."""
    from meta_deployer.platforms.devservers import DevServers

    if (project.work / "servers").is_dir():
        DevServers(project.work, project.work / "logs").stop_all(log=lambda _line: None)
