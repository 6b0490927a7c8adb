"""``make platform`` / ``platform-down`` (meta_deployer/platforms/aws/platform.py and
resources/platform/): the AWS rules our requests rely on (pure), the role policies statement by
statement (and through tests/iam_eval.py), and the whole plan against a moto server over HTTP.

moto 5.2.5 implements EFS file systems, access points and mount targets (and enforces one mount
target per availability zone), EC2 security groups, and ELBv2 rules; it does not check that an
authenticate action sits on an HTTPS listener, nor action order, nor the EFS/IAM rules of a task
definition: those are unit tests of our requests below.
"""

from __future__ import annotations

import json

import boto3
import pytest
from iam_eval import allowed

from meta_deployer.errors import MetaDeployerError, SettingsError
from meta_deployer.platforms.aws import engine
from meta_deployer.platforms.aws.bootstrap import bootstrap
from meta_deployer.platforms.aws.common import PlanError, tag_value
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.aws.platform import platform_down, platform_up
from meta_deployer.platforms.aws.resources.platform import PLATFORM_KINDS, PlatformInputs, efs, roles, services, web
from meta_deployer.settings import EcsSettings, PlatformAwsSettings, Settings

ACCOUNT, REGION = "123456789012", "us-east-1"
LOG: list[str] = []
PG_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:dagster/platform/postgres-AbCdEf"
IMAGE = "127.0.0.1:5000/dagster/platform@sha256:" + "ab" * 32


def inputs(**platform: object) -> PlatformInputs:
    ecs = EcsSettings(subnets=("subnet-a",), security_groups=("sg-0123456789abcdef0",), vpc_id="vpc-1", pg_secret_arn=PG_ARN)
    return PlatformInputs(ecs, PlatformAwsSettings(**platform), REGION, ACCOUNT, image_ref=IMAGE)


def arn(resource: str, service: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


# -- EFS: one mount target per availability zone -----------------------------------------------


def test_mount_targets_one_per_availability_zone():
    chosen = efs.mount_target_subnets([("subnet-a", "us-east-1a"), ("subnet-b", "us-east-1a"), ("subnet-c", "us-east-1b")])
    assert chosen == ["subnet-a", "subnet-c"]


def test_task_definitions_mount_the_workspace_as_aws_requires():
    i = inputs()
    for component in services.COMPONENTS:
        td = services.task_definition_request(component, i, "fs-1", "fsap-1")
        (volume,) = td["volumes"]
        conf = volume["efsVolumeConfiguration"]
        # With an access point: rootDirectory omitted or "/"; IAM authorization needs transit encryption.
        assert conf.get("rootDirectory", "/") == "/"
        assert conf["transitEncryption"] == "ENABLED" and conf["authorizationConfig"] == {"accessPointId": "fsap-1", "iam": "ENABLED"}
        (mount,) = td["containerDefinitions"][0]["mountPoints"]
        assert mount["readOnly"] is (component != "deployer")
        assert td["family"] == f"dagster-platform-{component}"
        assert td["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-group"] == f"/dagster/platform/{component}"
    shell, flag, script = services.task_definition_request("deployer", i, "fs", "ap")["containerDefinitions"][0]["command"]
    assert (shell, flag) == ("sh", "-c") and script.endswith("&& exec dagster api grpc -m meta_deployer.definitions -h 0.0.0.0 -p 4266")


def test_the_deployer_writes_the_workspace_before_it_serves_and_the_others_wait_for_it(tmp_path):
    """Run each container's shell script for real, with stand-ins for the programs on PATH: the
    deployer migrates and renders before it serves; the webserver and the daemon start only once
    workspace.yaml exists (and exec their server, so it gets ECS's signals)."""
    import os
    import subprocess

    bin_dir, workspace = tmp_path / "bin", tmp_path / "workspace.yaml"
    bin_dir.mkdir()
    trace = tmp_path / "trace"
    for program in ("dagster", "meta-deployer", "dagster-webserver", "dagster-daemon"):
        (bin_dir / program).write_text(f'#!/bin/sh\necho "{program} $*" >> {trace}\n')
        (bin_dir / program).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    i = inputs()

    def script(component):
        command = services.task_definition_request(component, i, "fs", "ap")["containerDefinitions"][0]["command"]
        return command[2].replace(services.WORKSPACE_FILE, str(workspace)).replace("sleep 5", "sleep 0.1")

    waiting = subprocess.Popen(["sh", "-c", script("webserver")], env=env, stdout=subprocess.DEVNULL)
    try:
        waiting.wait(timeout=1)
    except subprocess.TimeoutExpired:
        pass
    assert waiting.returncode is None and not trace.exists()  # no workspace.yaml yet: the webserver waits
    subprocess.run(["sh", "-c", script("deployer")], env=env, check=True)
    workspace.write_text("load_from: []\n")  # what meta-deployer render-workspace writes
    assert waiting.wait(timeout=30) == 0
    subprocess.run(["sh", "-c", script("daemon")], env=env, check=True, timeout=30)
    assert trace.read_text().splitlines() == [
        "dagster instance migrate", "meta-deployer render-workspace",
        "dagster api grpc -m meta_deployer.definitions -h 0.0.0.0 -p 4266",
        f"dagster-webserver -h 0.0.0.0 -p 3000 -w {workspace}",
        f"dagster-daemon run -w {workspace}",
    ]


# -- the listener rule: authenticate first, on HTTPS only, priorities from what exists -------------


OIDC = dict(
    auth="oidc", host="dagster.example.com", oidc_issuer="https://idp.example.com", oidc_client_id="cid",
    oidc_authorization_endpoint="https://idp.example.com/auth", oidc_token_endpoint="https://idp.example.com/token",
    oidc_user_info_endpoint="https://idp.example.com/userinfo",
    oidc_client_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/platform/oidc-AbCdEf",
)


def exposure(**platform: object) -> web.Exposure:
    i = inputs(**platform)
    i = PlatformInputs(i.settings.replace(lb_listener_arn="arn:listener"), i.platform, REGION, ACCOUNT)
    exposure = web.want(i)
    assert exposure is not None
    return exposure


@pytest.mark.parametrize("platform", [OIDC, dict(auth="cognito", host="d.example.com", cognito_user_pool_arn="arn:pool",
                                                   cognito_client_id="c", cognito_domain="dom")])
def test_rule_authenticates_with_order_1_then_forwards_with_order_2(platform):
    actions = web.rule_actions(exposure(**platform), "arn:tg", "secret")
    web.check_actions(actions)
    assert [(a["Type"], a["Order"]) for a in actions] == [(f"authenticate-{platform['auth']}", 1), ("forward", 2)]


@pytest.mark.parametrize("actions", [
    [{"Type": "forward", "Order": 1, "TargetGroupArn": "t"}, {"Type": "authenticate-oidc", "Order": 2}],
    [{"Type": "authenticate-oidc"}, {"Type": "forward", "TargetGroupArn": "t"}],
    [{"Type": "forward", "Order": 1, "TargetGroupArn": "t"}],
    [{"Type": "authenticate-oidc", "Order": 1}, {"Type": "forward", "Order": 1}],
])
def test_action_rules_refuse_what_aws_refuses_or_an_open_webserver(actions):
    with pytest.raises(PlanError):
        web.check_actions(actions)


def _plan_web(listener: dict, rules: list, **platform: object) -> list:
    want = exposure(**(platform or OIDC))
    ctx = engine.Context(engine.Scope("platform", EcsSettings()), {})
    return web.converge(want, {"target_group": None, "rule": None, "priorities": tuple(int(r) for r in rules), "listener": listener}, ctx)


def test_authenticate_needs_an_https_listener():
    with pytest.raises(PlanError, match="HTTPS"):
        _plan_web({"Protocol": "HTTP"}, [])


def test_rule_priority_is_the_lowest_free_one_and_the_secret_is_an_output():
    steps = _plan_web({"Protocol": "HTTPS"}, [1, 2, 4])
    (rule,) = [s for s in steps if s.operation == "CreateRule"]
    assert rule.params["Priority"] == 3
    assert 1 <= rule.params["Priority"] <= 50_000
    secret = rule.params["Actions"][0]["AuthenticateOidcConfig"]["ClientSecret"]
    assert isinstance(secret, engine.Output) and secret.call_id == web.SECRET_CALL
    assert "oidc-AbCdEf" not in "\n".join(s.describe() for s in steps if s.operation != "GetSecretValue")


def test_listener_without_auth_settings_is_refused():
    with pytest.raises(SettingsError, match="META_DEPLOYER_PLATFORM_AUTH"):
        exposure(host="d.example.com")
    with pytest.raises(SettingsError, match="META_DEPLOYER_OIDC_CLIENT_SECRET_ARN"):
        exposure(**{**OIDC, "oidc_client_secret_arn": None})


def test_every_platform_tag_value_is_in_the_aws_character_set():
    i = inputs()
    wanted = engine.wants(PLATFORM_KINDS, i)
    values = [v for r in roles.want_roles(i).values() for v in r.tags.values()]
    values += [v for s in wanted["platform_services"] for v in s.tags.values()]
    values += list(wanted["platform_workspace"].tags.values())
    assert values and all(tag_value(v) == v for v in values)


# -- roles, statement by statement ------------------------------------------------------------


def _allowed(policy: dict, action: str, resource: str, context: dict | None = None) -> bool:
    return allowed(policy, action, resource, context or {})


def test_daemon_may_pass_only_repo_roles_to_ecs_tasks():
    policy = roles.daemon_policy(inputs())
    ecs_tasks = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    assert _allowed(policy, "iam:PassRole", role_arn("dagster-repo-sales"), ecs_tasks)
    assert _allowed(policy, "iam:PassRole", role_arn("dagster-exec-sales"), ecs_tasks)
    assert not _allowed(policy, "iam:PassRole", role_arn("admin"), ecs_tasks)
    assert not _allowed(policy, "iam:PassRole", role_arn("dagster-platform-webserver"), ecs_tasks)
    assert not _allowed(policy, "iam:PassRole", role_arn("dagster-repo-sales"), {"iam:PassedToService": "lambda.amazonaws.com"})
    iam_actions = {a for s in policy["Statement"] for a in s["Action"] if a.startswith("iam:")}
    assert iam_actions == {"iam:PassRole"}
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert actions == {
        "ecs:RunTask", "ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource", "ecs:ListTasks",
        "ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition", "iam:PassRole", "ec2:DescribeNetworkInterfaces",
        "logs:DescribeLogStreams", "logs:FilterLogEvents", "logs:GetLogEvents", "elasticfilesystem:ClientMount",
    }
    in_cluster = {"ecs:cluster": arn("cluster/dagster", "ecs")}
    assert _allowed(policy, "ecs:RunTask", arn("task-definition/dagster-repo-sales:3", "ecs"), in_cluster)
    assert not _allowed(policy, "ecs:RunTask", arn("task-definition/other:3", "ecs"), in_cluster)
    assert _allowed(policy, "logs:GetLogEvents", arn("log-group:/dagster/repos/sales:log-stream:x", "logs"))
    assert not _allowed(policy, "logs:GetLogEvents", arn("log-group:/other:log-stream:x", "logs"))


def test_webserver_reads_and_writes_nothing_but_stops_run_tasks():
    policy = roles.webserver_policy(inputs())
    bucket = "arn:aws:s3:::dagster-storage"
    assert _allowed(policy, "s3:GetObject", f"{bucket}/repos/sales/logs/run/compute_logs/step.out")
    for action in ("s3:PutObject", "s3:DeleteObject"):
        assert not _allowed(policy, action, f"{bucket}/repos/sales/logs/run/compute_logs/step.out")
    assert not _allowed(policy, "s3:GetObject", f"{bucket}/system/deployments/sales.json")
    writes = [a for s in policy["Statement"] for a in s["Action"] if a.split(":")[1].startswith(("Put", "Delete", "Create", "Update", "Run", "Stop", "Pass", "ClientWrite"))]
    assert writes == ["ecs:StopTask"]
    # The UI's "Terminate" (EcsRunLauncher.terminate: DescribeTasks, then StopTask) on a run task of the
    # cluster, which the run launcher tags managed-by=meta-deployer; never a service's task.
    task = arn("task/dagster/0123456789abcdef", "ecs")
    assert _allowed(policy, "ecs:DescribeTasks", task)
    assert _allowed(policy, "ecs:StopTask", task, {"aws:ResourceTag/managed-by": "meta-deployer"})
    assert not _allowed(policy, "ecs:StopTask", task, {"aws:ResourceTag/meta-deployer:platform": "daemon"})
    assert not _allowed(policy, "ecs:StopTask", task)
    assert not _allowed(policy, "ecs:StopTask", arn("task/other/0123", "ecs"), {"aws:ResourceTag/managed-by": "meta-deployer"})
    assert not _allowed(policy, "ecs:RunTask", arn("task-definition/dagster-repo-sales:1", "ecs"))


def test_the_execution_role_reads_exactly_the_postgres_secret_and_no_other():
    policy = roles.execution_policy(inputs())
    assert _allowed(policy, "secretsmanager:GetSecretValue", PG_ARN)
    assert not _allowed(policy, "secretsmanager:GetSecretValue", OIDC["oidc_client_secret_arn"])
    assert not _allowed(policy, "secretsmanager:GetSecretValue", PG_ARN.replace("postgres-AbCdEf", "other-AbCdEf"))
    assert not _allowed(policy, "secretsmanager:GetSecretValue", arn("secret:*", "secretsmanager"))
    (statement,) = [s for s in policy["Statement"] if any(a.startswith("secretsmanager:") for a in s["Action"])]
    assert statement["Resource"] == [PG_ARN] and statement["Action"] == ["secretsmanager:GetSecretValue"]
    for key in ("webserver", "daemon", "deployer"):  # the tasks' own roles read no secret at all
        doc = roles.want_roles(inputs())[key].policy
        assert not any(a.startswith("secretsmanager:") for s in doc["Statement"] for a in s["Action"]), key


def test_make_platform_requires_the_postgres_secret_naming_it(tmp_path):
    from meta_deployer.platforms.aws.platform import require

    s = Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path), "META_DEPLOYER_PLATFORM": "ecs",
                           "META_DEPLOYER_SUBNETS": "subnet-a", "META_DEPLOYER_SECURITY_GROUPS": "sg-1"})
    with pytest.raises(SettingsError, match="META_DEPLOYER_PG_SECRET_ARN"):
        require(s)
    with pytest.raises(SettingsError, match="META_DEPLOYER_PG_SECRET_ARN"):
        platform_up(s, dry_run=True, log=LOG.append, gateway=object())


def test_the_platform_image_setting_must_be_by_digest():
    with pytest.raises(SettingsError, match="META_DEPLOYER_PLATFORM_IMAGE.*digest"):
        PlatformAwsSettings.from_env({"META_DEPLOYER_PLATFORM_IMAGE": "127.0.0.1:5000/dagster/platform:latest"})
    assert PlatformAwsSettings.from_env({"META_DEPLOYER_PLATFORM_IMAGE": IMAGE}).image == IMAGE


def test_deployer_acts_only_on_documented_names():
    policy = roles.deployer_policy(inputs(), "meta-deployer-build")
    bucket = "arn:aws:s3:::dagster-storage"
    assert _allowed(policy, "iam:CreateRole", role_arn("dagster-repo-sales"))
    assert not _allowed(policy, "iam:CreateRole", role_arn("admin"))
    assert not _allowed(policy, "iam:PutRolePolicy", role_arn("dagster-platform-deployer"))
    assert _allowed(policy, "s3:PutObject", f"{bucket}/repos/sales/x")
    assert _allowed(policy, "s3:PutObject", f"{bucket}/system/deployments/sales.json")
    assert not _allowed(policy, "s3:PutObject", f"{bucket}/other/x")
    assert _allowed(policy, "ecr:PutImage", arn("repository/dagster/sales", "ecr"))
    assert not _allowed(policy, "ecr:PutImage", arn("repository/other", "ecr"))
    assert _allowed(policy, "logs:CreateLogGroup", arn("log-group:/dagster/repos/sales", "logs"))
    assert not _allowed(policy, "logs:CreateLogGroup", arn("log-group:/aws/other", "logs"))
    # Replica discovery (META_DEPLOYER_WEBSERVERS=ecs:dagster/dagster-webserver): ListTasks in the cluster
    # (a container-instance action: any resource, ecs:cluster condition), then DescribeTasks.
    in_cluster = {"ecs:cluster": arn("cluster/dagster", "ecs")}
    assert _allowed(policy, "ecs:ListTasks", "*", in_cluster)
    assert not _allowed(policy, "ecs:ListTasks", "*", {"ecs:cluster": arn("cluster/other", "ecs")})
    assert _allowed(policy, "ecs:DescribeTasks", arn("task/dagster/0123", "ecs"))
    # Records and leases: conditional PutObject (If-None-Match / If-Match) is s3:PutObject; a lease is deleted.
    for key in ("system/deployments/sales.json", "system/leases/sales.json"):
        assert _allowed(policy, "s3:PutObject", f"{bucket}/{key}") and _allowed(policy, "s3:GetObject", f"{bucket}/{key}")
    assert _allowed(policy, "s3:DeleteObject", f"{bucket}/system/leases/sales.json")
    assert _allowed(policy, "s3:ListBucket", bucket, {"s3:prefix": "system/leases/sales.json"})
    assert _allowed(policy, "codebuild:StartBuild", arn("project/meta-deployer-build", "codebuild"))
    assert not _allowed(policy, "codebuild:StartBuild", arn("project/other", "codebuild"))
    # Every resource of every statement is `*` (actions with no resource type) or a documented name.
    for statement in policy["Statement"]:
        for resource in statement["Resource"]:
            assert resource == "*" or any(part in resource for part in (
                "dagster-repo-", "dagster-exec-", "dagster-ecs-execution", "/dagster/", "dagster/*", ":::dagster-storage",
                "cluster/dagster", "/dagster/*", "dagster-*", "listener", "meta-deployer-build", "file-system/*",
                ":service/*",  # Cloud Map ids: held to the repo tag by the condition
            )), (statement["Sid"], resource)
    # Cloud Map: only services carrying the repo tag, created with it (AWS sends no namespace name here).
    service = arn("service/srv-0123456789", "servicediscovery")
    repo_tag = "aws:ResourceTag/meta-deployer:repo"
    assert _allowed(policy, "servicediscovery:CreateService", "*", {"aws:RequestTag/meta-deployer:repo": "sales"})
    assert not _allowed(policy, "servicediscovery:CreateService", "*")
    for action in ("servicediscovery:DeleteService", "servicediscovery:GetService", "servicediscovery:UpdateService"):
        assert _allowed(policy, action, service, {repo_tag: "sales"})
        assert not _allowed(policy, action, service)
        assert not _allowed(policy, action, arn("namespace/ns-0123", "servicediscovery"), {repo_tag: "sales"})


def _generated_policies() -> dict[str, dict]:
    from meta_deployer.platforms.aws.resources import codebuild, shared, task_role

    return {
        "execution": roles.execution_policy(inputs()), "webserver": roles.webserver_policy(inputs()),
        "daemon": roles.daemon_policy(inputs()), "deployer": roles.deployer_policy(inputs(), "meta-deployer-build"),
        "repo task role": task_role.task_role_policy("dagster-storage", "sales", read=("marketing",)),
        "codebuild": codebuild.service_role_policy("dagster-storage", "meta-deployer-build", "aws", REGION, ACCOUNT),
        "shared execution": shared.execution_policy("aws", REGION, ACCOUNT),
    }


def test_every_condition_key_is_one_aws_sends_with_that_action():
    """moto evaluates no condition; AWS denies when a condition names a key the action never carries
    (the rule and its sources: tests/iam_eval.py, CONDITION_KEYS)."""
    from iam_eval import CONDITION_KEYS, carries

    checked = 0
    for name, policy in _generated_policies().items():
        for statement in policy["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for tests in statement.get("Condition", {}).values():
                for key in tests:
                    for action in actions:
                        assert action in CONDITION_KEYS, (
                            f"{name}/{statement.get('Sid')}: write down which condition keys AWS sends with {action}"
                        )
                        assert carries(action, key), f"{name}/{statement.get('Sid')}: AWS never sends {key} with {action}"
                        checked += 1
    assert checked >= 10


def test_the_rule_catches_a_namespace_name_condition_on_create_service():
    from iam_eval import carries

    assert not carries("servicediscovery:CreateService", "servicediscovery:NamespaceName")
    assert not carries("servicediscovery:DeleteService", "servicediscovery:NamespaceName")
    assert carries("servicediscovery:CreateService", "aws:RequestTag/meta-deployer:repo")
    with pytest.raises(AssertionError, match="never sends"):
        allowed({"Statement": []}, "servicediscovery:GetService", "*", {"servicediscovery:NamespaceName": "local"})


# -- against the moto server --------------------------------------------------------------------


#: The Postgres secret's value: no part of it may appear in a task definition.
PG_VALUE = {"host": "pg.internal.example", "port": "5432", "dbname": "dagster", "username": "dagster_user",
            "password": "pg-pa55w0rd-never-plain"}


@pytest.fixture(scope="module")
def moto_two():
    """A moto server whose services run 2 tasks (the webserver's default count; the session's runs 1)."""
    from conftest import MotoServer

    server = MotoServer({"MOTO_ECS_SERVICE_RUNNING": "2"})
    yield server
    server.stop()


@pytest.fixture
def network(moto_two, monkeypatch):
    moto_two.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_two.url)
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.50.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for i, zone in ((1, "us-east-1a"), (2, "us-east-1b"), (3, "us-east-1a"))
    ]
    code = ec2.create_security_group(GroupName="dagster-code", Description="code servers", VpcId=vpc)["GroupId"]
    office = ec2.create_security_group(GroupName="office", Description="people", VpcId=vpc)["GroupId"]
    pg = boto3.client("secretsmanager").create_secret(Name="dagster/platform/postgres", SecretString=json.dumps(PG_VALUE))["ARN"]
    return {
        "META_DEPLOYER_PG_SECRET_ARN": pg, "META_DEPLOYER_PLATFORM_IMAGE": IMAGE,
        "META_DEPLOYER_PLATFORM": "ecs", "META_DEPLOYER_VPC_ID": vpc, "META_DEPLOYER_SUBNETS": ",".join(subnets),
        "META_DEPLOYER_SECURITY_GROUPS": code, "META_DEPLOYER_BUCKET": "dagster-storage",
        "META_DEPLOYER_ECS_STABILITY_TIMEOUT": "10", "META_DEPLOYER_ECS_POLL_INTERVAL": "0.01",
        "META_DEPLOYER_PLATFORM_ALLOWED_SECURITY_GROUPS": office,
    }


@pytest.fixture
def settings(network, tmp_path):
    s = Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path), **network})
    bootstrap(s, log=LOG.append)
    return s


def test_platform_creates_everything_then_plans_nothing_and_down_keeps_the_data(settings, network):
    gw = AwsGateway()
    dry = platform_up(settings, dry_run=True, log=LOG.append, gateway=gw)
    assert dry.steps and gw.mutating_calls() == []
    assert boto3.client("efs").describe_file_systems()["FileSystems"] == []

    done = platform_up(settings, log=LOG.append, gateway=gw)
    assert [s.describe() for s in done.steps] == [s.describe() for s in dry.steps]

    ecs = boto3.client("ecs")
    found = {s["serviceName"]: s for s in ecs.describe_services(
        cluster="dagster", services=["dagster-webserver", "dagster-daemon", "meta-deployer"], include=["TAGS"])["services"]}
    assert {n: s["desiredCount"] for n, s in found.items()} == {"dagster-webserver": 2, "dagster-daemon": 1, "meta-deployer": 1}
    assert found["dagster-daemon"]["deploymentConfiguration"]["maximumPercent"] == 100
    assert {t["key"]: t["value"] for t in found["meta-deployer"]["tags"]} == {"meta-deployer:platform": "deployer"}
    for component in ("webserver", "daemon", "deployer"):
        td = ecs.describe_task_definition(taskDefinition=f"dagster-platform-{component}")["taskDefinition"]
        assert td["taskRoleArn"].endswith(f":role/dagster-platform-{component}")
        assert boto3.client("iam").get_role(RoleName=f"dagster-platform-{component}")["Role"]
        assert boto3.client("logs").describe_log_groups(logGroupNamePrefix=f"/dagster/platform/{component}")["logGroups"]

    efs_client = boto3.client("efs")
    (fs,) = efs_client.describe_file_systems()["FileSystems"]
    assert fs["Encrypted"] and {t["Key"]: t["Value"] for t in fs["Tags"]}["meta-deployer:platform"] == "workspace"
    targets = efs_client.describe_mount_targets(FileSystemId=fs["FileSystemId"])["MountTargets"]
    assert sorted(t["AvailabilityZoneName"] for t in targets) == ["us-east-1a", "us-east-1b"]  # 3 subnets, 2 zones
    (point,) = efs_client.describe_access_points(FileSystemId=fs["FileSystemId"])["AccessPoints"]
    assert point["RootDirectory"]["Path"] == "/workspace"

    ec2 = boto3.client("ec2")
    vpc = network["META_DEPLOYER_VPC_ID"]

    def group(name):
        return ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": [name]}])["SecurityGroups"][0]

    tasks, nfs, webserver = group("dagster-platform-tasks"), group("dagster-platform-efs"), group("dagster-platform-webserver")
    assert [(p["FromPort"], [g["GroupId"] for g in p["UserIdGroupPairs"]]) for p in nfs["IpPermissions"]] == [(2049, [tasks["GroupId"]])]
    assert [(p["FromPort"], [g["GroupId"] for g in p["UserIdGroupPairs"]], p["IpRanges"]) for p in webserver["IpPermissions"]] == [
        (3000, [network["META_DEPLOYER_PLATFORM_ALLOWED_SECURITY_GROUPS"]], [])
    ]

    sd = boto3.client("servicediscovery")
    assert "meta-deployer-service" in [s["Name"] for s in sd.list_services()["Services"]]

    start = len(gw.calls)
    again = platform_up(settings, log=LOG.append, gateway=gw)
    assert again.steps == (), again.render()
    assert gw.mutating_calls(start) == []

    dry_down = platform_down(settings, dry_run=True, log=LOG.append, gateway=gw)
    assert dry_down.steps and gw.mutating_calls(start) == []
    platform_down(settings, log=LOG.append, gateway=gw)
    left = [s for s in ecs.describe_services(cluster="dagster", services=["dagster-webserver", "dagster-daemon", "meta-deployer"])["services"] if s["status"] != "INACTIVE"]
    assert left == []
    assert ecs.list_task_definitions(familyPrefix="dagster-platform-", status="ACTIVE")["taskDefinitionArns"] == []
    assert efs_client.describe_file_systems()["FileSystems"]  # kept
    assert boto3.client("logs").describe_log_groups(logGroupNamePrefix="/dagster/platform/")["logGroups"]  # kept
    assert boto3.client("s3").head_bucket(Bucket="dagster-storage")

    platform_down(settings, purge=True, log=LOG.append, gateway=gw)
    assert efs_client.describe_file_systems()["FileSystems"] == []
    assert boto3.client("logs").describe_log_groups(logGroupNamePrefix="/dagster/platform/")["logGroups"] == []


def test_a_foreign_rule_on_the_webserver_group_is_revoked(settings, network):
    gw = AwsGateway()
    platform_up(settings, log=LOG.append, gateway=gw)
    ec2 = boto3.client("ec2")
    sg = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["dagster-platform-webserver"]}])["SecurityGroups"][0]
    ec2.authorize_security_group_ingress(GroupId=sg["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 3000, "ToPort": 3000, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    platform_up(settings, log=LOG.append, gateway=gw)
    sg = ec2.describe_security_groups(GroupIds=[sg["GroupId"]])["SecurityGroups"][0]
    assert all(not p.get("IpRanges") for p in sg["IpPermissions"])
    assert [g["GroupId"] for p in sg["IpPermissions"] for g in p["UserIdGroupPairs"]] == [network["META_DEPLOYER_PLATFORM_ALLOWED_SECURITY_GROUPS"]]


@pytest.mark.parametrize("name", ["dagster-webserver", "dagster-daemon", "meta-deployer"])
def test_no_repo_can_take_a_platform_service_name(name):
    from meta_deployer import naming

    assert naming.name_problem(name) and "reserved" in naming.name_problem(name)


def test_behind_an_https_listener_the_rule_authenticates_then_forwards(settings, network, tmp_path):
    ec2, elbv2 = boto3.client("ec2"), boto3.client("elbv2")
    vpc, subnets = network["META_DEPLOYER_VPC_ID"], network["META_DEPLOYER_SUBNETS"].split(",")
    lb_sg = ec2.create_security_group(GroupName="alb", Description="alb", VpcId=vpc)["GroupId"]
    lb = elbv2.create_load_balancer(Name="dagster", Subnets=subnets[:2], SecurityGroups=[lb_sg], Scheme="internal")["LoadBalancers"][0]
    default = [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTPS", Port=443, DefaultActions=default,
        Certificates=[{"CertificateArn": boto3.client("acm").request_certificate(DomainName="dagster.example.com")["CertificateArn"]}],
    )["Listeners"][0]["ListenerArn"]
    tg = elbv2.create_target_group(Name="dagster-other", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]["TargetGroupArn"]
    elbv2.create_rule(ListenerArn=listener, Priority=1, Conditions=[{"Field": "path-pattern", "Values": ["/x"]}],
                      Actions=[{"Type": "forward", "TargetGroupArn": tg}])
    secret = boto3.client("secretsmanager").create_secret(Name="dagster/platform/oidc", SecretString="s3cr3t")["ARN"]
    env = {**network, "META_DEPLOYER_LB_LISTENER_ARN": listener, **{
        f"META_DEPLOYER_{k.upper()}" if k.startswith("oidc") else f"META_DEPLOYER_PLATFORM_{k.upper()}": v
        for k, v in {**OIDC, "oidc_client_secret_arn": secret}.items()
    }}
    s = Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path), **env})
    gw = AwsGateway()
    done = platform_up(s, log=LOG.append, gateway=gw)
    assert "s3cr3t" not in done.render() and "s3cr3t" not in "\n".join(LOG)
    rules = [r for r in elbv2.describe_rules(ListenerArn=listener)["Rules"] if not r["IsDefault"]]
    (ours,) = [r for r in rules if r["Priority"] != "1"]
    assert ours["Priority"] == "2"
    assert [(a["Type"], a.get("Order")) for a in sorted(ours["Actions"], key=lambda a: a["Order"])] == [("authenticate-oidc", 1), ("forward", 2)]
    (target_group,) = elbv2.describe_target_groups(Names=["meta-deployer-webserver"])["TargetGroups"]
    assert target_group["HealthCheckPath"] == "/server_info" and target_group["Port"] == 3000
    sg = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["dagster-platform-webserver"]}])["SecurityGroups"][0]
    assert [g["GroupId"] for p in sg["IpPermissions"] for g in p["UserIdGroupPairs"]] == [lb_sg]
    start = len(gw.calls)
    assert platform_up(s, log=LOG.append, gateway=gw).steps == ()
    assert gw.mutating_calls(start) == []


# -- the platform image through the builder, and the three task definitions field by field ------------


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("environment") or []}


def test_platform_builds_its_image_and_its_task_definitions_are_complete(network, tmp_path):
    """bootstrap + make platform with the docker builder (the engine and the test registry; a tiny
    project stands in for this one, whose own build the rehearsal's e2e test makes): a dry run builds
    nothing; the run builds and pushes the image once and every task definition runs it by digest,
    with the Postgres fields as secrets only; a second run builds nothing and changes nothing."""
    import os
    import re
    import uuid

    import requests
    from dagster_aws.ecs.container_context import EcsContainerContext
    from dockerkit import Collect, engine_env
    from test_platform_image import tiny_project

    from meta_deployer.platforms.aws.instance import pg_secrets

    engine = engine_env()
    registry = engine["META_DEPLOYER_REGISTRY"]
    bucket = f"dagster-{uuid.uuid4().hex[:12]}"  # a new instance config: a tag no earlier run pushed
    env = {k: v for k, v in network.items() if k != "META_DEPLOYER_PLATFORM_IMAGE"}
    env.update(engine, META_DEPLOYER_ROOT=str(tmp_path), META_DEPLOYER_BUCKET=bucket,
               META_DEPLOYER_BASE_IMAGE=os.environ.get("META_DEPLOYER_BASE_IMAGE") or "python:3.12-slim",
               META_DEPLOYER_CONFIG_GIT_URL="https://git.example.com/platform/config.git",
               AWS_ENDPOINT_URL=os.environ["AWS_ENDPOINT_URL"])
    settings = Settings.from_env(env)
    bootstrap(settings, log=LOG.append)
    root = tiny_project(tmp_path / "project")
    pg_arn = network["META_DEPLOYER_PG_SECRET_ARN"]
    gw = AwsGateway()

    dry_log = Collect()
    dry = platform_up(settings, dry_run=True, log=dry_log, gateway=gw, root=root)
    assert dry.steps and gw.mutating_calls() == []
    (to_build,) = [line for line in dry_log.lines if "is not built yet" in line]
    tag = re.search(r"dagster/platform:([0-9a-f]{16})", to_build).group(1)
    manifest = f"http://{registry}/v2/dagster/platform/manifests/{tag}"
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    assert requests.head(manifest, headers=accept, timeout=30).status_code == 404  # the dry run built nothing

    log = Collect()
    platform_up(settings, log=log, gateway=gw, root=root)
    assert any(line.startswith(f"building the platform image {registry}/dagster/platform:{tag}") for line in log.lines)
    answer = requests.head(manifest, headers=accept, timeout=30)
    assert answer.status_code == 200
    pinned = f"{registry}/dagster/platform@{answer.headers['Docker-Content-Digest']}"
    assert re.fullmatch(r"[^@]+@sha256:[0-9a-f]{64}", pinned)

    ecs, efs_client = boto3.client("ecs"), boto3.client("efs")
    (fs,) = efs_client.describe_file_systems()["FileSystems"]
    (point,) = efs_client.describe_access_points(FileSystemId=fs["FileSystemId"])["AccessPoints"]
    volume = {"name": "workspace", "efsVolumeConfiguration": {
        "fileSystemId": fs["FileSystemId"], "rootDirectory": "/", "transitEncryption": "ENABLED",
        "authorizationConfig": {"accessPointId": point["AccessPointId"], "iam": "ENABLED"}}}
    secrets = pg_secrets(pg_arn)
    assert [s["name"] for s in secrets] == sorted(["DAGSTER_PG_DB", "DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME"])
    assert all(s["valueFrom"].startswith(f"{pg_arn}:") and s["valueFrom"].endswith("::") for s in secrets)
    defs = {}
    for component in ("webserver", "daemon", "deployer"):
        td = ecs.describe_task_definition(taskDefinition=f"dagster-platform-{component}")["taskDefinition"]
        defs[component] = td
        (container,) = td["containerDefinitions"]
        assert container["image"] == pinned, component
        assert container["secrets"] == secrets, component
        assert td["taskRoleArn"] == role_arn(f"dagster-platform-{component}")
        assert td["executionRoleArn"] == role_arn("dagster-platform-execution")
        assert td["volumes"] == [volume]
        assert container["mountPoints"] == [{"sourceVolume": "workspace", "containerPath": "/workspace", "readOnly": component != "deployer"}]
        env_vars = _env(container)
        assert env_vars["DAGSTER_HOME"] == "/opt/dagster/home" and env_vars["META_DEPLOYER_BUCKET"] == bucket
        assert not any(name.startswith("DAGSTER_PG_") for name in env_vars), component
        text = json.dumps(td)
        for value in (PG_VALUE["host"], PG_VALUE["username"], PG_VALUE["password"]):
            assert value not in text, (component, value)
    assert set(_env(defs["webserver"]["containerDefinitions"][0])) == {"DAGSTER_HOME", "META_DEPLOYER_BUCKET"}

    deployer = _env(defs["deployer"]["containerDefinitions"][0])
    expected = {
        "META_DEPLOYER_PLATFORM": "ecs", "META_DEPLOYER_STATE": "s3",
        "META_DEPLOYER_SELF_SERVER": "meta-deployer-service.local:4266",
        "META_DEPLOYER_WEBSERVERS": "ecs:dagster/dagster-webserver",
        "META_DEPLOYER_WORKSPACE": "/workspace/workspace.yaml",
        "META_DEPLOYER_ECS_CLUSTER": "dagster", "META_DEPLOYER_NAMESPACE": "local",
        "META_DEPLOYER_SUBNETS": ",".join(settings.ecs.subnets),
        "META_DEPLOYER_SECURITY_GROUPS": network["META_DEPLOYER_SECURITY_GROUPS"],
        "META_DEPLOYER_VPC_ID": network["META_DEPLOYER_VPC_ID"],
        "META_DEPLOYER_BUCKET": bucket, "META_DEPLOYER_REGISTRY": registry, "META_DEPLOYER_BUILDER": "docker",
        "META_DEPLOYER_PG_SECRET_ARN": pg_arn,
        "META_DEPLOYER_CONFIG_GIT_URL": "https://git.example.com/platform/config.git",
        "DAGSTER_HOME": "/opt/dagster/home", "DAGSTER_CURRENT_IMAGE": pinned,
    }
    assert {k: deployer.get(k) for k in expected} == expected
    # Nothing of this machine: no endpoint, no host path, no OIDC secret.
    assert not {"AWS_ENDPOINT_URL", "META_DEPLOYER_PLATFORM_IMAGE", "DOCKER_HOST"} & set(deployer)
    assert str(tmp_path) not in json.dumps(deployer)

    # The container context, as dagster-aws itself reads it: deploy runs get the deployer's family,
    # role, the workspace read-write, the Postgres secrets and the same environment.
    raw = json.loads(deployer["DAGSTER_CONTAINER_CONTEXT"])
    context = EcsContainerContext.create_from_config(raw)
    assert context.task_definition_arn == "dagster-platform-deployer"
    assert context.container_name == defs["deployer"]["containerDefinitions"][0]["name"]
    assert context.task_role_arn == role_arn("dagster-platform-deployer")
    assert context.execution_role_arn == role_arn("dagster-platform-execution")
    assert list(context.volumes) == [volume]
    assert list(context.mount_points) == [{"sourceVolume": "workspace", "containerPath": "/workspace", "readOnly": False}]
    assert [dict(s) for s in raw["ecs"]["secrets"]] == secrets
    run_env = dict(item.split("=", 1) for item in context.env_vars)
    assert {k: run_env.get(k) for k in expected if k != "DAGSTER_CURRENT_IMAGE"} == {k: v for k, v in expected.items() if k != "DAGSTER_CURRENT_IMAGE"}
    assert "DAGSTER_CONTAINER_CONTEXT" not in run_env

    # The platform roles as IAM holds them: the execution role reads exactly the Postgres secret.
    iam = boto3.client("iam")
    live = iam.get_role_policy(RoleName="dagster-platform-execution", PolicyName=roles.POLICY_NAMES["execution"])["PolicyDocument"]
    live = json.loads(live) if isinstance(live, str) else live
    assert _allowed(live, "secretsmanager:GetSecretValue", pg_arn)
    assert not _allowed(live, "secretsmanager:GetSecretValue", pg_arn + "-other")

    start = len(gw.calls)
    again_log = Collect()
    again = platform_up(settings, log=again_log, gateway=gw, root=root)
    assert again.steps == (), again.render()
    assert gw.mutating_calls(start) == []
    assert not any(line.startswith(("building", "Step ")) for line in again_log.lines), again_log.lines
    dry_again = platform_up(settings, dry_run=True, log=Collect(), gateway=gw, root=root)
    assert dry_again.steps == () and gw.mutating_calls(start) == []


def test_settings_as_env_read_back_give_the_same_settings_and_leave_defaults_out():
    """The deployer's environment is the settings' as_env: what it reads back must be what was set."""
    given = {"META_DEPLOYER_SUBNETS": "subnet-b,subnet-a", "META_DEPLOYER_SECURITY_GROUPS": "sg-1",
             "META_DEPLOYER_ECS_STABILITY_TIMEOUT": "12.5", "META_DEPLOYER_PG_SECRET_ARN": PG_ARN,
             "META_DEPLOYER_LOG_RETENTION_DAYS": "14"}
    ecs = EcsSettings.from_env(given)
    env = ecs.as_env()
    assert EcsSettings.from_env(env) == ecs
    assert set(env) == set(given)  # the cluster, namespace... stay at their defaults on both sides
