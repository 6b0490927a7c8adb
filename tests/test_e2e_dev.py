"""End to end on the dev platform: the Make targets, a real `dagster dev`, GraphQL.

1. a real git repository holding a small Dagster project;
2. make add-repo;  3. a real webserver on the generated workspace;
4. the location is LOADED with its assets;  5. a pushed commit + make update-repo shows the new asset;
6. make remove-repo and the location is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, free_port, wait_for_port
from dagster_ui import LAUNCH, materialize_when_daemon_ready, wait_for_location
from devkit import definitions_py
from meta_deployer.webserver import graphql

pytestmark = pytest.mark.e2e


def make(project, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env={**os.environ, **project.env(), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"make {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture
def webserver(project, monkeypatch):
    """`dagster dev` (webserver + daemon) on the project's generated workspace."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", url)
    make(project, "install")
    subprocess.run([sys.executable, "-m", "meta_deployer.cli", "render-workspace"], check=True, capture_output=True)
    log = open(project.root / "dagster-dev.log", "w")
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "dagster"), "dev", "--use-legacy-code-server-behavior", "-w", str(project.workspace), "-h", "127.0.0.1", "-p", str(port)],
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


def test_add_update_remove_through_make_and_the_webserver(project, git_remote, webserver):
    remote = git_remote(files={"definitions.py": definitions_py("first")})
    env = {"DAGSTER_WEBSERVER_URL": webserver}

    make(project, "add-repo", f"REPO_URL={remote.url}", "REPO_NAME=team-e2e", **env)
    assert (project.repos / "team-e2e" / "config.yml").is_file()
    wait_for_location(webserver, "team-e2e", assets=["first"])

    # an external repo that knows nothing about meta_deployer stores its asset under its own prefix
    assert materialize_when_daemon_ready(webserver, "team-e2e", ["first"]) == "SUCCESS"
    assert (project.work / "storage" / "repos" / "team-e2e" / "assets" / "first").is_file()
    assert list((project.work / "storage" / "repos" / "team-e2e" / "logs").rglob("*.out"))  # per-repo compute logs

    remote.commit({"definitions.py": definitions_py("first", "second")})
    make(project, "update-repo", "REPO_NAME=team-e2e", **env)
    wait_for_location(webserver, "team-e2e", assets=["first", "second"])

    listed = make(project, "list-repos", **env).stdout
    assert "team-e2e" in listed and remote.head()[:12] in listed and "LOADED" in listed

    logs = make(project, "repo-logs", "REPO_NAME=team-e2e", **env).stdout
    assert "loading location team-e2e" in logs

    make(project, "remove-repo", "REPO_NAME=team-e2e", **env)
    wait_for_location(webserver, "team-e2e", present=False)
    assert not (project.repos / "team-e2e").exists()
    assert (project.work / "storage" / "repos" / "team-e2e" / "assets" / "first").is_file()  # data kept


def test_add_repo_launched_from_the_ui(project, git_remote, webserver):
    remote = git_remote(files={"definitions.py": definitions_py("from_ui")})
    params = {
        "selector": {"repositoryLocationName": "meta_deployer", "repositoryName": "__repository__", "jobName": "add_repo"},
        "runConfigData": {"ops": {"clone": {"config": {"name": "team-ui", "git_url": remote.url}}}},
        "executionMetadata": {"tags": [{"key": "meta_deployer/repo", "value": "team-ui"}]},
    }
    result = graphql(webserver, LAUNCH, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    wait_for_location(webserver, "team-ui", assets=["from_ui"], timeout=240)
    assert (project.repos / "team-ui" / "config.yml").is_file()


def test_bad_arguments_write_nothing(project, git_remote):
    remote = git_remote(files={"definitions.py": definitions_py("x")})
    for args in (["REPO_NAME=Bad;name", f"REPO_URL={remote.url}"], ["REPO_NAME=ok-name", "REPO_URL=-oProxyCommand=x"], ["REPO_NAME=ok-name"]):
        result = make(project, "add-repo", *args, check=False)
        assert result.returncode != 0
        assert "error:" in result.stderr
    assert list(project.repos.iterdir()) == []
    assert not project.workspace.exists()
    result = make(project, "update-repo", "REPO_NAME=never-added", check=False)
    assert result.returncode != 0 and "add the repo first" in result.stderr
