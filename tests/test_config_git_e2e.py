"""Config from git under a real `dagster dev` daemon: a config pushed to the configuration repository
is deployed with no `make`, and a commit that deletes it removes the repo."""

from __future__ import annotations

import time

import pytest
import yaml

from devkit import dagster_dev, definitions_py
from meta_deployer.pipeline import Deployer

pytestmark = pytest.mark.e2e


def wait_until(check, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout}s")


def test_a_pushed_config_deploys_and_a_deleting_commit_removes(project, git_remote, monkeypatch):
    code = git_remote("code", files={"definitions.py": definitions_py("pushed")})
    config = git_remote("config", files={"repos/.gitkeep": ""})
    env = {"META_DEPLOYER_CONFIG_GIT_URL": config.url}
    monkeypatch.setenv("META_DEPLOYER_CONFIG_GIT_URL", config.url)
    spec = {"name": "gitops", "git_url": code.url, "python_file": "definitions.py"}
    with dagster_dev(project, env=env):
        head = config.commit({"repos/gitops/config.yml": yaml.safe_dump(spec, sort_keys=False)}, "add gitops")
        wait_until(lambda: Deployer().registry.get("gitops") is not None, f"gitops deployed from config commit {head[:12]}")
        assert "gitops" in project.workspace.read_text()
        assert not (project.repos / "gitops").exists()  # nothing written into the local folder

        config.commit({"repos/gitops/config.yml": None}, "remove gitops")
        wait_until(lambda: Deployer().registry.get("gitops") is None, "gitops removed after the deleting commit")
        assert "gitops" not in project.workspace.read_text()
