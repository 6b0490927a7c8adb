"""End to end on the dev platform: the Make targets, a real `dagster dev`, GraphQL.

1. a real git repository holding a small Dagster project;
2. make add-repo;  3. a real webserver on the generated workspace;
4. the location is LOADED with its assets;  5. a pushed commit + make update-repo shows the new asset;
6. make remove-repo and the location is gone.
"""

from __future__ import annotations

import pytest

from dagster_ui import LAUNCH, materialize_when_daemon_ready, wait_for_location
from devkit import dagster_dev, definitions_py, run_make
from meta_deployer.webserver import graphql

pytestmark = pytest.mark.e2e


def make(project, *args: str, check: bool = True, **env: str):
    return run_make(project, *args, env=env, check=check, timeout=600)


@pytest.fixture
def webserver(project, monkeypatch):
    """`dagster dev` (webserver + daemon) on the project's generated workspace."""
    with dagster_dev(project) as url:
        monkeypatch.setenv("DAGSTER_WEBSERVER_URL", url)
        yield url


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
