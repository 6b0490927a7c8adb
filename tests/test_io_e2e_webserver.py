"""Per-repo compute logs end to end: a run launched over GraphQL in a real ``dagster dev``.

The run carries its code location as a remote origin (as every run launched from the UI,
a schedule or a sensor does), so its step logs land under ``repos/<name>/logs/``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, free_port, wait_for_port
from dagster_ui import materialize_when_daemon_ready, wait_for_location
from devkit import definitions_py

pytestmark = pytest.mark.e2e

COMPUTE_LOGS = "\ncompute_logs:\n  module: meta_deployer.compute_logs\n  class: RepoComputeLogManager\n  config: {}\n"


@pytest.fixture
def webserver(project, monkeypatch):
    """`dagster dev` on the project's workspace, with per-repo compute logs configured."""
    config = project.root / "dagster_home" / "dagster.yaml"
    if "compute_logs:" not in config.read_text():
        config.write_text(config.read_text() + COMPUTE_LOGS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", url)
    subprocess.run([sys.executable, "-m", "meta_deployer.cli", "render-workspace"], check=True, capture_output=True)
    log = open(project.root / "dagster-dev.log", "w")
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "dagster"), "dev", "--use-legacy-code-server-behavior", "-w", str(project.workspace),
         "-h", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **project.env(), "DAGSTER_WEBSERVER_URL": url},
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
        log.close()


def test_ui_run_logs_and_assets_land_under_the_repo_prefix(project, git_remote, webserver):
    from meta_deployer.pipeline import Deployer
    from meta_deployer.spec import parse_spec

    remote = git_remote(files={"definitions.py": definitions_py("first")})
    Deployer().deploy(parse_spec({"name": "team-logs", "git_url": remote.url}, "test"))
    wait_for_location(webserver, "team-logs", assets=["first"])
    assert materialize_when_daemon_ready(webserver, "team-logs", ["first"]) == "SUCCESS"
    storage = project.work / "storage"
    files = sorted(str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file())
    assert "repos/team-logs/assets/first" in files
    assert [f for f in files if f.startswith("repos/team-logs/logs/") and f.endswith(".out")], files
    assert all(f.startswith(("repos/team-logs/", "system/logs/")) for f in files), files
