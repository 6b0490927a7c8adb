"""list-repos shows the platform's own services (ECS DescribeServices through the gateway) above the repos,
and repo-logs REPO_NAME=platform/<webserver|daemon|deployer> reads their log groups; against moto."""

from __future__ import annotations

import time

import boto3
import pytest

from meta_deployer import cli, naming
from meta_deployer.platforms.aws.bootstrap import bootstrap
from test_ecs_support import make_network, settings_for


@pytest.fixture
def ecs_env(moto, tmp_path, monkeypatch):
    env = {**make_network(), "META_DEPLOYER_ROOT": str(tmp_path), "DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bootstrap(settings_for(tmp_path, env), log=lambda line: None)
    return env


def platform_service(env, name: str, desired: int) -> None:
    """A stand-in for a service `make platform` creates (the other half of issue 11): same cluster and name."""
    ecs = boto3.client("ecs")
    family = f"dagster-platform-{name}"
    ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "main", "image": "x", "memoryReservation": 512}],
    )
    ecs.create_service(
        cluster="dagster", serviceName=name, taskDefinition=family, desiredCount=desired, launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": env["META_DEPLOYER_SUBNETS"].split(","),
                                                      "securityGroups": [env["META_DEPLOYER_SECURITY_GROUPS"]]}},
    )


def test_the_names_are_the_agreed_ones():
    assert naming.PLATFORM_SERVICES == {"webserver": "dagster-webserver", "daemon": "dagster-daemon", "deployer": "meta-deployer"}
    assert [naming.platform_log_group(s) for s in naming.PLATFORM_SERVICES] == [
        "/dagster/platform/webserver", "/dagster/platform/daemon", "/dagster/platform/deployer",
    ]
    with pytest.raises(ValueError):
        naming.platform_log_group("../repos/sales")


@pytest.mark.parametrize("name", ["platform/webserver", "platform/daemon", "platform/deployer", "platform",
                                  "dagster-webserver", "dagster-daemon", "meta-deployer", "platform/x"])
def test_platform_names_are_never_repo_names(name):
    assert naming.name_problem(name) is not None
    with pytest.raises(ValueError):
        naming.validate_name(name)


def test_a_platform_name_is_refused_where_a_repo_is_expected(capsys, ecs_env):
    assert cli.main(["run-config", "update", "--name", "platform/webserver"]) == cli.EXIT_USAGE
    assert "repo name" in capsys.readouterr().err


def test_list_repos_shows_the_platform_services_above_the_repos(capsys, ecs_env):
    platform_service(ecs_env, "dagster-webserver", 2)
    platform_service(ecs_env, "dagster-daemon", 1)  # meta-deployer is not created: shown as missing
    assert cli.main(["list-repos"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["PLATFORM", "SERVICE", "STATE"]
    rows = {line.split()[0]: line.split() for line in out[2:5]}
    described = {
        svc["serviceName"]: svc
        for svc in boto3.client("ecs").describe_services(cluster="dagster", services=["dagster-webserver", "dagster-daemon"])["services"]
    }
    web = described["dagster-webserver"]
    assert rows["dagster-webserver"][2] == f"{web['runningCount']}/2"  # what ECS says, not what we asked for
    assert rows["dagster-webserver"][1] in ("running", "pending", "rolling-out")
    assert rows["dagster-webserver"][-1] == "platform/webserver"
    assert rows["dagster-daemon"][2] == f"{described['dagster-daemon']['runningCount']}/1"
    assert rows["meta-deployer"][1:3] == ["missing", "0/0"]
    assert any(line.startswith("no repos") for line in out[5:])  # the repos come after


def test_repo_logs_of_a_platform_service(capsys, ecs_env):
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName="/dagster/platform/daemon")
    logs.create_log_stream(logGroupName="/dagster/platform/daemon", logStreamName="daemon/main/t1")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName="/dagster/platform/daemon", logStreamName="daemon/main/t1",
        logEvents=[{"timestamp": now + i, "message": f"daemon line {i}"} for i in range(3)],
    )
    assert cli.main(["repo-logs", "--name", "platform/daemon", "--tail", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 2)[-1] for line in lines] == ["daemon line 1", "daemon line 2"]
    assert cli.main(["repo-logs", "--name", "platform/webserver"]) == 0  # no group yet: nothing, no error
    assert capsys.readouterr().out == ""
