"""Shared fixtures: real parts only (a moto server over HTTP, real git repositories).

No test may reach real AWS: fake credentials are set for every test, and AWS
clients reach a moto *server* through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach real AWS: fake keys, a fixed region, no shared config files."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


class MotoServer:
    """A moto server in its own process, on 127.0.0.1 and a free port."""

    def __init__(self, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")).read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="session")
def moto_session() -> Iterator[MotoServer]:
    server = MotoServer({"MOTO_ECS_SERVICE_RUNNING": "1"})
    yield server
    server.stop()


@pytest.fixture
def moto(moto_session: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A clean moto server reached through AWS_ENDPOINT_URL (state reset per test)."""
    moto_session.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_session.url)
    return moto_session


@pytest.fixture
def moto_factory() -> Iterator:
    """Start extra moto servers with their own environment (IAM enforcement, ECS states)."""
    servers: list[MotoServer] = []

    def start(**env: str) -> MotoServer:
        server = MotoServer(env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def git_remote(tmp_path: Path):
    """Factory for real git repositories on disk, used through file:// URLs."""
    from gitrepo import GitRemote

    def make(name: str = "remote", files: dict[str, str] | None = None, branch: str = "main") -> GitRemote:
        return GitRemote.create(tmp_path / f"{name}.git-src", files or {}, branch=branch)

    return make


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh project folder wired through the settings' environment variables."""
    from devkit import Project

    proj = Project(tmp_path / "project")
    proj.repos.mkdir(parents=True)
    (proj.root / "dagster_home").mkdir()
    (proj.root / "dagster_home" / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    for key, value in proj.env().items():
        monkeypatch.setenv(key, value)
    # No webserver in unit/integration tests unless a test starts one.
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", f"http://127.0.0.1:{free_port()}")
    yield proj
    from devkit import stop_dev_servers

    stop_dev_servers(proj)  # dev deploys leave their supervised code servers running, by design


@pytest.fixture(scope="session")
def validator_reports(tmp_path_factory):
    """Real validator output (``meta_deployer_runtime.validate``, told the window), as a build or task log shows it:
    ``"ok"``: this Python's Dagster loading a small project; ``"none"``: an environment with no dagster at all.
    Each is (lines, exit code); made once per session."""
    from versionkit import empty_venv, validator_output

    from meta_deployer import versions

    project = tmp_path_factory.mktemp("validated")
    (project / "definitions.py").write_text(
        "import dagster as dg\n\n\n@dg.asset\ndef a() -> int:\n    return 1\n\n\ndefs = dg.Definitions(assets=[a])\n"
    )
    return {
        "ok": validator_output(sys.executable, project, **versions.window_env()),
        "none": validator_output(empty_venv() / "bin" / "python", project, **versions.window_env()),
    }
