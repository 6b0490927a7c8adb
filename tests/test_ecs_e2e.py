"""The ECS platform through the Make targets: moto over HTTP, a real engine and registry.

make bootstrap -> make add-repo (build, push by digest, ECS resources, stable rollout,
workspace entry) -> no-op update (no mutating AWS call) -> list-repos -> DRY_RUN remove ->
make remove-repo (keeps logs and data) -> remove again finds nothing.
"""

from __future__ import annotations

import boto3
import pytest
import yaml

from devkit import definitions_py, run_make
from dockerkit import engine_env
from test_ecs_support import make_network

pytestmark = pytest.mark.docker


def make(project, env: dict[str, str], *args: str, check: bool = True):
    return run_make(project, *args, env=env, check=check)


def test_ecs_add_noop_list_remove_through_make(project, git_remote, moto):
    engine = engine_env()
    env = {**make_network(), **engine, "META_DEPLOYER_ECS_STABILITY_TIMEOUT": "60"}
    make(project, env, "bootstrap")
    again = make(project, env, "bootstrap").stdout
    assert "nothing to do" in again.lower() or "exists" in again.lower(), again

    remote = git_remote(files={"definitions.py": definitions_py("orders")})
    make(project, env, "add-repo", f"REPO_URL={remote.url}", "REPO_NAME=sales")

    entry = yaml.safe_load(project.workspace.read_text())["load_from"][1]["grpc_server"]
    assert entry == {"host": "sales-service.local", "port": 4000, "location_name": "sales"}
    ecs = boto3.client("ecs")
    service = ecs.describe_services(cluster="dagster", services=["sales"])["services"][0]
    taskdef = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    assert "@sha256:" in taskdef["containerDefinitions"][0]["image"]  # by digest
    assert taskdef["taskRoleArn"].endswith("role/dagster-repo-sales")

    update = make(project, env, "update-repo", "REPO_NAME=sales")
    assert "already serves on ecs; nothing to do" in update.stdout + update.stderr
    listed = make(project, env, "list-repos").stdout
    assert "running 1/1" in listed and "sales-service.local:4000" in listed and remote.head()[:12] in listed

    dry = make(project, env, "remove-repo", "REPO_NAME=sales", "DRY_RUN=1").stdout
    assert "sales" in dry and ecs.describe_services(cluster="dagster", services=["sales"])["services"][0]["status"] == "ACTIVE"

    make(project, env, "remove-repo", "REPO_NAME=sales")
    services = ecs.describe_services(cluster="dagster", services=["sales"])["services"]
    assert not services or services[0]["status"] != "ACTIVE"
    assert "sales" not in project.workspace.read_text()
    logs = boto3.client("logs").describe_log_groups(logGroupNamePrefix="/dagster/repos/sales")["logGroups"]
    assert logs  # kept without PURGE
    second = make(project, env, "remove-repo", "REPO_NAME=sales")
    assert "nothing is deployed under this name" in second.stdout + second.stderr
