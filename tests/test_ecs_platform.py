"""The ecs platform against a real moto server over HTTP: add, update, remove, adopt, fail.

Each test starts from a reset moto server, creates a VPC, runs ``bootstrap``
and then drives :class:`EcsPlatform` the way the pipeline does. Assertions
read the resulting AWS state back with plain boto3 clients.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest

from meta_deployer import naming
from meta_deployer.platforms.aws import plan as aws_plan
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.aws.bootstrap import BUCKET_LAYOUT, TEMP_RULE_ID, bootstrap
from meta_deployer.errors import AwsOperationError, UnhealthyError
from meta_deployer.platforms.aws.resources.execution_role import execution_role_policy
from meta_deployer.platforms import location
from meta_deployer.platforms.ecs import EcsPlatform, code_server
from meta_deployer.spec import SecretRef
from test_ecs_support import CallCounter, checkout_for, make_network, published_for, settings_for, spec_for

LOG: list[str] = []


def log(line: str) -> None:
    LOG.append(line)


@pytest.fixture
def env(moto):
    return make_network()


@pytest.fixture
def settings(env, tmp_path):
    s = settings_for(tmp_path, env)
    bootstrap(s, log=log)
    return s


@pytest.fixture
def platform(settings):
    return EcsPlatform(settings)


def deploy(platform, tmp_path, spec=None, seed="v1", commit="c1"):
    spec = spec or spec_for("sales")
    return platform.serve(spec, published_for(spec.name, seed), checkout_for(spec.name, tmp_path, commit), log)


def td_env(td):
    return {e["name"]: e["value"] for e in td["containerDefinitions"][0]["environment"]}


def active_revisions(family="dagster-repo-sales"):
    return boto3.client("ecs").list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"]


# -- add --------------------------------------------------------------------------


def test_add_creates_every_resource_tagged(platform, settings, tmp_path):
    spec = spec_for(
        "sales",
        environment=[{"name": "FOO", "value": "bar"}],
        secrets=[{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/sales/db"}],
        access={"read": ["marketing"]},
    )
    served = deploy(platform, tmp_path, spec)
    assert served.endpoint == "sales-service.local:4000"
    assert served.workspace_entry == {"grpc_server": {"host": "sales-service.local", "port": 4000, "location_name": "sales"}}
    assert served.changed

    ecs, iam, logs, sd = (boto3.client(s) for s in ("ecs", "iam", "logs", "servicediscovery"))
    tag = {"key": naming.REPO_TAG_KEY, "value": "sales"}

    # Task definition
    described = ecs.describe_task_definition(taskDefinition="dagster-repo-sales", include=["TAGS"])
    td = described["taskDefinition"]
    assert tag in described["tags"]
    assert td["revision"] == 1 and td["cpu"] == "256" and td["memory"] == "512"
    assert td["networkMode"] == "awsvpc" and td["requiresCompatibilities"] == ["FARGATE"]
    assert td["taskRoleArn"] == "arn:aws:iam::123456789012:role/dagster-repo-sales"
    assert td["executionRoleArn"] == "arn:aws:iam::123456789012:role/dagster-exec-sales"
    container = td["containerDefinitions"][0]
    assert container["image"] == published_for("sales").ref.rsplit(":", 1)[0] + "@" + published_for("sales").digest
    server_id = location.server_id(
        spec, checkout_for("sales", tmp_path, "c1").commit, container["image"], platform.settings_fingerprint(spec)
    )
    assert container["command"] == [
        "dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "4000", "--module-name", "meta_deployer_runtime.entrypoint",
        "--fixed-server-id", server_id,
    ]
    env = td_env(td)
    assert env["META_DEPLOYER_CODE_SOURCE"] == "python_file:definitions.py"
    assert env["FOO"] == "bar" and env["META_DEPLOYER_REPO"] == "sales"
    assert env["META_DEPLOYER_BUCKET"] == "dagster-storage" and env["META_DEPLOYER_PREFIX"] == "repos/sales"
    assert container["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/sales/db"}]
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/dagster/repos/sales"
    assert container["healthCheck"]["command"][1:] == ["dagster", "api", "grpc-health-check", "-p", "4000"]
    context = json.loads(env["DAGSTER_CONTAINER_CONTEXT"])["ecs"]
    assert context["task_role_arn"] == td["taskRoleArn"] and context["task_definition_arn"] == "dagster-repo-sales"
    assert context["execution_role_arn"] == td["executionRoleArn"]  # runs inject secrets with the repo's own role

    # Service
    svc = ecs.describe_services(cluster="dagster", services=["sales"], include=["TAGS"])["services"][0]
    assert svc["status"] == "ACTIVE" and svc["desiredCount"] == 1 and svc["launchType"] == "FARGATE"
    assert svc["taskDefinition"].endswith("dagster-repo-sales:1")
    assert svc["deploymentConfiguration"]["minimumHealthyPercent"] == 100
    assert svc["deploymentConfiguration"]["maximumPercent"] == 200
    assert svc["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert svc["healthCheckGracePeriodSeconds"] == 120
    assert svc["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    tags = {t["key"]: t["value"] for t in svc["tags"]}
    assert tags[naming.REPO_TAG_KEY] == "sales"
    assert tags[aws_plan.TAG_COMMIT] == checkout_for("sales", tmp_path).commit
    assert tags[aws_plan.TAG_IMAGE] == container["image"]

    # Cloud Map: the service registers into <name>-service.local with a low TTL
    ns = next(n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == "local")
    (cm,) = [s for s in sd.list_services()["Services"] if s["Name"] == "sales-service"]
    assert cm["DnsConfig"]["DnsRecords"] == [{"Type": "A", "TTL": 10}]
    assert svc["serviceRegistries"] == [{"registryArn": cm["Arn"]}]
    assert {"Key": naming.REPO_TAG_KEY, "Value": "sales"} in sd.list_tags_for_resource(ResourceARN=cm["Arn"])["Tags"]
    assert ns["Type"] == "DNS_PRIVATE"

    # IAM: trusted by ECS tasks, one inline policy for the repo's prefix (+ shared, + granted)
    role = iam.get_role(RoleName="dagster-repo-sales")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert {"Key": naming.REPO_TAG_KEY, "Value": "sales"} in role["Tags"]
    assert iam.list_role_policies(RoleName="dagster-repo-sales")["PolicyNames"] == ["repo-storage"]
    doc = iam.get_role_policy(RoleName="dagster-repo-sales", PolicyName="repo-storage")["PolicyDocument"]
    assert doc == aws_plan.task_role_policy("dagster-storage", "sales", ("marketing",))
    # The repo's own execution role: its image, its log group, its own and the shared secrets.
    exec_role = iam.get_role(RoleName="dagster-exec-sales")["Role"]
    assert exec_role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert {"Key": naming.REPO_TAG_KEY, "Value": "sales"} in exec_role["Tags"]
    (exec_policy,) = iam.list_role_policies(RoleName="dagster-exec-sales")["PolicyNames"]
    exec_doc = iam.get_role_policy(RoleName="dagster-exec-sales", PolicyName=exec_policy)["PolicyDocument"]
    assert exec_doc == execution_role_policy(
        "sales", aws_plan.AwsContext("123456789012", "us-east-1"),
        "arn:aws:ecr:us-east-1:123456789012:repository/dagster/sales",
    )

    # Logs
    (group,) = logs.describe_log_groups(logGroupNamePrefix="/dagster/repos/sales")["logGroups"]
    assert group["retentionInDays"] == 30
    assert logs.list_tags_log_group(logGroupName="/dagster/repos/sales")["tags"] == {naming.REPO_TAG_KEY: "sales"}

    # And nothing left to do
    assert platform.plan_for(spec, published_for("sales"), checkout_for("sales", tmp_path)).actions == ()


def test_dry_run_plans_without_changing_anything(platform, tmp_path):
    calls = CallCounter(platform.gateway)
    planned = platform.plan_for(spec_for("sales"), published_for("sales"), checkout_for("sales", tmp_path))
    assert "create ECS service sales" in planned.render()
    assert "register task definition dagster-repo-sales" in planned.render()
    assert calls.mutating == []
    assert boto3.client("ecs").list_task_definitions()["taskDefinitionArns"] == []


def test_dry_run_without_a_build(platform, tmp_path):
    """DRY_RUN=1 builds nothing: the plan uses the deployed image, or a placeholder for a new commit."""
    unbuilt = platform.plan_for(spec_for("sales"), None, checkout_for("sales", tmp_path))
    assert "register task definition" in unbuilt.render()
    deploy(platform, tmp_path)
    calls = CallCounter(platform.gateway)
    assert platform.plan_for(spec_for("sales"), None, checkout_for("sales", tmp_path)).actions == ()
    env_change = platform.plan_for(spec_for("sales", environment=[{"name": "X", "value": "1"}]), None, checkout_for("sales", tmp_path))
    # The dry run shows the validation task of the new revision, before the service update.
    assert env_change.operations[:3] == ["ecs.RegisterTaskDefinition", "ecs.RunTaskToCompletion", "ecs.UpdateService"]
    assert "validate the definitions of repo sales: run a one-off task of" in env_change.render()
    assert "-m meta_deployer_runtime.validate" in env_change.render()
    new_commit = platform.plan_for(spec_for("sales"), None, checkout_for("sales", tmp_path, "c2"))
    assert "ecs.RegisterTaskDefinition" in new_commit.operations
    assert calls.mutating == []


# -- update -----------------------------------------------------------------------


def _server_id(revision: int) -> str:
    td = boto3.client("ecs").describe_task_definition(taskDefinition=f"dagster-repo-sales:{revision}")["taskDefinition"]
    command = td["containerDefinitions"][0]["command"]
    return command[command.index("--fixed-server-id") + 1]


def test_no_change_makes_no_mutating_call(platform, tmp_path):
    deploy(platform, tmp_path)
    calls = CallCounter(platform.gateway)
    served = deploy(platform, tmp_path)
    assert calls.mutating == []
    assert not served.changed
    assert len(active_revisions()) == 1
    assert len(calls.calls) <= 10, calls.calls
    # The server id is in the task definition and deterministic: the same version plans nothing.
    spec = spec_for("sales")
    assert not platform.plan_for(spec, published_for("sales"), checkout_for("sales", tmp_path, "c1"))
    assert "--fixed-server-id" in _server_id_command(1)


def _server_id_command(revision: int) -> list[str]:
    td = boto3.client("ecs").describe_task_definition(taskDefinition=f"dagster-repo-sales:{revision}")["taskDefinition"]
    return td["containerDefinitions"][0]["command"]


def test_server_id_is_deterministic_per_version(tmp_path):
    """Pure: the same inputs give the same id (replicas, restarts, redeploys); a changed commit, image,
    spec or settings give a new one."""
    spec = spec_for("sales")
    sid = location.server_id(spec, "a" * 40, "reg/sales@sha256:" + "1" * 64, "s1")
    assert sid == location.server_id(spec_for("sales"), "a" * 40, "reg/sales@sha256:" + "1" * 64, "s1")
    assert sid.startswith("sales-aaaaaaaaaaaa-")
    others = {
        location.server_id(spec, "b" * 40, "reg/sales@sha256:" + "1" * 64, "s1"),
        location.server_id(spec, "a" * 40, "reg/sales@sha256:" + "2" * 64, "s1"),
        location.server_id(spec_for("sales", environment=[{"name": "X", "value": "1"}]), "a" * 40, "reg/sales@sha256:" + "1" * 64, "s1"),
        location.server_id(spec, "a" * 40, "reg/sales@sha256:" + "1" * 64, "s2"),
    }
    assert sid not in others and len(others) == 4
    server = code_server(spec, "bucket", sid)
    assert server.command[-2:] == ("--fixed-server-id", sid)
    assert "--fixed-server-id" not in code_server(spec, "bucket").command


def test_code_change_rolls_out_a_new_revision(platform, tmp_path):
    deploy(platform, tmp_path)
    calls = CallCounter(platform.gateway)
    served = deploy(platform, tmp_path, seed="v2", commit="c2")
    assert served.metadata["task_definition"] == "dagster-repo-sales:2"
    assert "ecs.RegisterTaskDefinition" in calls.mutating and "ecs.UpdateService" in calls.mutating
    svc = boto3.client("ecs").describe_services(cluster="dagster", services=["sales"], include=["TAGS"])["services"][0]
    assert svc["taskDefinition"].endswith("dagster-repo-sales:2")
    assert _server_id(2) != _server_id(1) and _server_id(2).startswith("sales-")  # a new version, a new identity
    tags = {t["key"]: t["value"] for t in svc["tags"]}
    assert tags[aws_plan.TAG_COMMIT] == checkout_for("sales", tmp_path, "c2").commit
    assert tags[aws_plan.TAG_IMAGE].endswith(published_for("sales", "v2").digest)


def test_env_only_change_registers_a_revision_with_the_same_image(platform, tmp_path):
    deploy(platform, tmp_path)
    calls = CallCounter(platform.gateway)
    changed = spec_for("sales", environment=[{"name": "FOO", "value": "2"}])
    deploy(platform, tmp_path, changed)  # same Published: nothing built or pushed
    assert calls.mutating.count("ecs.RegisterTaskDefinition") == 1
    assert not any(c.startswith(("ecr.", "s3.")) for c in calls.calls)
    new = boto3.client("ecs").describe_task_definition(taskDefinition="dagster-repo-sales:2")["taskDefinition"]
    old = boto3.client("ecs").describe_task_definition(taskDefinition="dagster-repo-sales:1")["taskDefinition"]
    assert td_env(new)["FOO"] == "2"
    assert new["containerDefinitions"][0]["image"] == old["containerDefinitions"][0]["image"]


def test_only_the_last_revisions_are_kept(settings, tmp_path):
    platform = EcsPlatform(settings, ecs_settings=None)
    for i in range(5):
        deploy(platform, tmp_path, seed=f"v{i}", commit=f"c{i}")
    arns = active_revisions()
    assert [a.rsplit(":", 1)[-1] for a in arns] == ["3", "4", "5"]


def test_access_read_change_updates_the_policy_only(platform, tmp_path):
    deploy(platform, tmp_path)
    calls = CallCounter(platform.gateway)
    deploy(platform, tmp_path, spec_for("sales", access={"read": ["other"]}))
    assert "iam.PutRolePolicy" in calls.mutating
    assert "ecs.RegisterTaskDefinition" in calls.mutating  # META_DEPLOYER_READ_ACCESS changed too
    doc = boto3.client("iam").get_role_policy(RoleName="dagster-repo-sales", PolicyName="repo-storage")["PolicyDocument"]
    # A grant reaches the other repo's assets only (never its code archives, outputs or logs).
    assert "arn:aws:s3:::dagster-storage/repos/other/assets/*" in json.dumps(doc)
    assert "arn:aws:s3:::dagster-storage/repos/other/*" not in json.dumps(doc)


# -- remove -----------------------------------------------------------------------


def test_remove_deletes_serving_resources_keeps_data_and_a_second_run_finds_nothing(platform, settings, tmp_path):
    deploy(platform, tmp_path)
    boto3.client("s3").put_object(Bucket="dagster-storage", Key="repos/sales/storage/x", Body=b"1")
    platform.stop("sales", purge=False, log=log)

    ecs, iam, logs, sd, s3 = (boto3.client(s) for s in ("ecs", "iam", "logs", "servicediscovery", "s3"))
    services = ecs.describe_services(cluster="dagster", services=["sales"])["services"]
    assert all(s["status"] == "INACTIVE" for s in services)
    assert active_revisions() == []
    assert [s for s in sd.list_services()["Services"] if s["Name"] == "sales-service"] == []
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName="dagster-repo-sales")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName="dagster-exec-sales")
    assert logs.describe_log_groups(logGroupNamePrefix="/dagster/repos/sales")["logGroups"]  # kept
    assert s3.get_object(Bucket="dagster-storage", Key="repos/sales/storage/x")["Body"].read() == b"1"  # kept
    assert "sales" not in platform.observe()

    calls = CallCounter(platform.gateway)
    assert platform.plan_removal("sales", purge=False).actions == ()
    platform.stop("sales", purge=False, log=log)
    assert calls.mutating == []


def test_purge_also_deletes_logs_images_and_data(platform, tmp_path):
    deploy(platform, tmp_path)
    boto3.client("ecr").create_repository(repositoryName="dagster/sales")
    s3 = boto3.client("s3")
    s3.put_object(Bucket="dagster-storage", Key="repos/sales/storage/x", Body=b"1")
    s3.put_object(Bucket="dagster-storage", Key="repos/sales-two/keep", Body=b"1")
    platform.stop("sales", purge=True, log=log)
    assert boto3.client("logs").describe_log_groups(logGroupNamePrefix="/dagster/repos/sales")["logGroups"] == []
    assert boto3.client("ecr").describe_repositories()["repositories"] == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="dagster-storage", Prefix="repos/")["Contents"]]
    assert "repos/sales/storage/x" not in keys and "repos/sales-two/keep" in keys
    assert platform.plan_removal("sales", purge=True).actions == ()


# -- adoption, observe, logs ---------------------------------------------------------


def test_adoption_after_restart(settings, tmp_path):
    first = EcsPlatform(settings)
    deploy(first, tmp_path, spec_for("sales"))
    deploy(first, tmp_path, spec_for("marketing"))

    restarted = EcsPlatform(settings)  # a new process: no memory but AWS
    seen = restarted.observe()
    assert sorted(seen) == ["marketing", "sales"]
    sales = seen["sales"]
    assert sales.status == "running 1/1 (COMPLETED)"
    assert sales.commit == checkout_for("sales", tmp_path).commit
    assert sales.artifact.endswith(published_for("sales").digest)
    assert sales.details["digest"] == published_for("sales").digest
    assert sales.details["running"] == 1 and sales.details["desired"] == 1 and sales.details["rollout"] == "COMPLETED"
    assert sales.endpoint == "sales-service.local:4000"
    assert sales.workspace_entry == {"grpc_server": {"host": "sales-service.local", "port": 4000, "location_name": "sales"}}
    assert restarted.is_serving("sales", {"commit": sales.commit, "artifact": sales.artifact})
    assert restarted.is_serving("sales", {"commit": sales.commit, "digest": published_for("sales").digest})
    assert not restarted.is_serving("sales", {"commit": sales.commit, "digest": published_for("sales", "v9").digest})
    assert not restarted.is_serving("sales", {"commit": "0" * 40})

    calls = CallCounter(restarted.gateway)
    deploy(restarted, tmp_path, spec_for("sales"))
    assert calls.mutating == []  # adopted, not redeployed


def test_logs_newest_last(platform, tmp_path):
    deploy(platform, tmp_path)
    logs = boto3.client("logs")
    logs.create_log_stream(logGroupName="/dagster/repos/sales", logStreamName="dagster/dagster/task1")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName="/dagster/repos/sales", logStreamName="dagster/dagster/task1",
        logEvents=[{"timestamp": now + i, "message": f"line {i}"} for i in range(5)],
    )
    lines = list(platform.logs("sales", follow=False, tail=3))
    assert [line.rsplit(" ", 2)[-2:] for line in lines] == [["line", "2"], ["line", "3"], ["line", "4"]]
    assert list(platform.logs("nobody", follow=False, tail=3)) == []


# -- failures ----------------------------------------------------------------------------


def test_stability_timeout_keeps_state_and_says_why(moto_factory, monkeypatch, tmp_path):
    server = moto_factory(MOTO_ECS_SERVICE_RUNNING="0")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    env = make_network()
    settings = settings_for(tmp_path, env, META_DEPLOYER_ECS_STABILITY_TIMEOUT="0.3")
    bootstrap(settings, log=log)
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName="/dagster/repos/sales")
    logs.create_log_stream(logGroupName="/dagster/repos/sales", logStreamName="dagster/dagster/t")
    logs.put_log_events(
        logGroupName="/dagster/repos/sales", logStreamName="dagster/dagster/t",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": "ModuleNotFoundError: No module named 'defs'"}],
    )
    platform = EcsPlatform(settings)
    with pytest.raises(UnhealthyError) as info:
        deploy(platform, tmp_path)
    message = str(info.value)
    assert "ECS service sales in cluster dagster: not stable within 0.3s (running 0/1, rollout IN_PROGRESS" in message
    assert "keeps serving" in message and "workspace entry is unchanged" in message
    assert "Stopped tasks" in message
    assert "ModuleNotFoundError: No module named 'defs'" in message

    # The deployment record was not written: observe reports it pending, with no commit.
    seen = platform.observe()["sales"]
    assert seen.status == "pending 0/1 (IN_PROGRESS)" and seen.commit is None and seen.workspace_entry is None
    assert not platform.is_serving("sales", {"commit": checkout_for("sales", tmp_path).commit})
    # The next plan still waits and then records: it does not redo the work.
    again = platform.plan_for(spec_for("sales"), published_for("sales"), checkout_for("sales", tmp_path))
    assert again.operations == ["wait.ServiceStable", "ecs.TagResource"]


def test_aws_errors_name_the_call_and_the_resource(settings, tmp_path):
    platform = EcsPlatform(
        settings, ecs_settings=aws_settings_with(settings, subnets=("subnet-missing",))
    )
    with pytest.raises(AwsOperationError) as info:
        deploy(platform, tmp_path)
    # The validation task is the first call that uses the network (it runs before the service moves).
    assert "run_task on one-off task of dagster-repo-sales:1 in cluster dagster failed" in str(info.value)
    assert "subnet-missing" in str(info.value)


def aws_settings_with(settings, **changes):
    return EcsPlatform(settings).ecs.replace(**changes)


def test_load_balancer_target_group_and_rule(env, settings, tmp_path):
    elbv2 = boto3.client("elbv2")
    subnets = env["META_DEPLOYER_SUBNETS"].split(",")
    lb = elbv2.create_load_balancer(Name="dagster-internal", Subnets=subnets, Scheme="internal", Type="application")
    lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80, DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}]
    )["Listeners"][0]["ListenerArn"]
    platform = EcsPlatform(settings, ecs_settings=aws_settings_with(settings, lb_listener_arn=listener))
    deploy(platform, tmp_path)
    (tg,) = elbv2.describe_target_groups(Names=["dagster-sales"])["TargetGroups"]
    assert tg["ProtocolVersion"] == "GRPC" and tg["TargetType"] == "ip" and tg["Port"] == 4000
    rules = [r for r in elbv2.describe_rules(ListenerArn=listener)["Rules"] if not r["IsDefault"]]
    assert rules[0]["Actions"][0]["TargetGroupArn"] == tg["TargetGroupArn"]
    svc = boto3.client("ecs").describe_services(cluster="dagster", services=["sales"])["services"][0]
    assert svc["loadBalancers"] == [{"targetGroupArn": tg["TargetGroupArn"], "containerName": "dagster", "containerPort": 4000}]
    assert platform.plan_for(spec_for("sales"), published_for("sales"), checkout_for("sales", tmp_path)).actions == ()

    platform.stop("sales", purge=False, log=log)
    assert [r for r in elbv2.describe_rules(ListenerArn=listener)["Rules"] if not r["IsDefault"]] == []
    assert elbv2.describe_target_groups()["TargetGroups"] == []


# -- bootstrap ---------------------------------------------------------------------------


def test_bootstrap_is_idempotent_and_dry_run_changes_nothing(env, tmp_path):
    settings = settings_for(tmp_path, env)
    gateway = AwsGateway()
    dry = bootstrap(settings, dry_run=True, log=log, gateway=gateway)
    assert not dry.applied and "create bucket s3://dagster-storage" in dry.render()
    assert gateway.mutating_calls() == []
    assert boto3.client("s3").list_buckets()["Buckets"] == []

    done = bootstrap(settings, log=log, gateway=gateway)
    assert done.applied and len(done.steps) == len(dry.steps)
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="dagster-storage")["Contents"]}
    assert keys == set(BUCKET_LAYOUT)
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket="dagster-storage")["Rules"]
    assert rule["ID"] == TEMP_RULE_ID and rule["Filter"]["Prefix"] == "temp/" and rule["Expiration"]["Days"] == 7
    assert boto3.client("ecs").describe_clusters(clusters=["dagster"])["clusters"][0]["status"] == "ACTIVE"
    assert [n["Name"] for n in boto3.client("servicediscovery").list_namespaces()["Namespaces"]] == ["local"]
    assert boto3.client("iam").get_role(RoleName="dagster-ecs-execution")["Role"]

    start = len(gateway.calls)
    again = bootstrap(settings, log=log, gateway=gateway)
    assert again.steps == () and "nothing to do" in again.render()
    assert gateway.mutating_calls(start) == []


def test_missing_cluster_says_run_bootstrap(settings, tmp_path):
    platform = EcsPlatform(settings, ecs_settings=aws_settings_with(settings, cluster="nowhere"))
    with pytest.raises(AwsOperationError, match="make bootstrap"):
        deploy(platform, tmp_path)


def test_secrets_the_repo_execution_role_cannot_read_are_warned_about(tmp_path):
    platform = EcsPlatform(settings_for(tmp_path, {}))  # no AWS call: a check of the spec only
    spec = spec_for(
        "sales",
        secrets=[{"name": "OK_ONE", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/sales/db"}],
    )
    # The spec itself refuses a secret outside dagster/sales/ (test_hostile_config); this is the
    # platform's second line, for a spec that got past it: build one without validation.
    elsewhere = SecretRef.model_construct(name="ELSEWHERE", value_from="arn:aws:secretsmanager:us-east-1:123456789012:secret:team/db")
    spec = spec.model_copy(update={"secrets": (*spec.secrets, elsewhere)})
    (warning,) = platform.secret_warnings(spec)
    assert "ELSEWHERE" in warning and "dagster/sales/*" in warning and "dagster/shared/*" in warning
    other_region = SecretRef.model_construct(
        name="FAR", value_from="arn:aws:secretsmanager:eu-west-1:123456789012:secret:dagster/sales/db"
    )
    far = spec.model_copy(update={"secrets": (*spec.secrets[:1], other_region)})
    assert platform.secret_warnings(far) == []  # without the account's context: the prefix only
    (warning,) = platform.secret_warnings(far, aws_plan.AwsContext("123456789012", "us-east-1"))
    assert "FAR" in warning and "eu-west-1" in warning


def test_bootstrap_deletes_the_old_policy_that_read_every_secret(settings):
    iam = boto3.client("iam")
    old = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": ["arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/*"]},
    ]}
    iam.put_role_policy(RoleName="dagster-ecs-execution", PolicyName="pull-images-write-logs-read-secrets", PolicyDocument=json.dumps(old))
    bootstrap(settings, log=log)
    assert iam.list_role_policies(RoleName="dagster-ecs-execution")["PolicyNames"] == ["pull-images-write-logs"]
    assert bootstrap(settings, log=log).steps == ()


def test_a_failed_record_write_after_a_stable_rollout_still_serves_and_the_next_deploy_converges(platform, tmp_path):
    """Before: TagResource failing after the rollout failed the deploy while the new version served,
    so the pipeline wrote no record, and every later deploy failed the same way."""
    from botocore.awsrequest import AWSResponse
    from test_aws_gateway import _Raw

    deploy(platform, tmp_path)
    failures = []

    def reject_once(request, **_):
        if failures:
            return None
        failures.append(request.url)
        body = b'{"__type":"InvalidParameterException","message":"The tag value is invalid"}'
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))

    platform.gateway.ecs.meta.events.register("before-send.ecs.TagResource", reject_once)
    served = deploy(platform, tmp_path, seed="v2", commit="c2")  # does not raise
    assert failures and served.metadata["task_definition"] == "dagster-repo-sales:2"
    (warning,) = served.metadata["warnings"]
    assert "record deployment" in warning and "InvalidParameterException" in warning
    ecs = boto3.client("ecs")
    svc = ecs.describe_services(cluster="dagster", services=["sales"], include=["TAGS"])["services"][0]
    assert svc["taskDefinition"].endswith("dagster-repo-sales:2")  # the new version serves
    tags = {t["key"]: t["value"] for t in svc["tags"]}
    assert tags[aws_plan.TAG_COMMIT] == checkout_for("sales", tmp_path, "c1").commit  # stale record
    new_commit = checkout_for("sales", tmp_path, "c2").commit
    assert not platform.is_serving("sales", {"commit": new_commit})  # so the pipeline deploys again

    # The next deploy converges the tags, and only them.
    calls = CallCounter(platform.gateway)
    again = deploy(platform, tmp_path, seed="v2", commit="c2")
    assert calls.mutating == ["ecs.TagResource"] and again.metadata["warnings"] == []
    svc = ecs.describe_services(cluster="dagster", services=["sales"], include=["TAGS"])["services"][0]
    assert {t["key"]: t["value"] for t in svc["tags"]}[aws_plan.TAG_COMMIT] == new_commit
    assert platform.is_serving("sales", {"commit": new_commit})
    assert platform.plan_for(spec_for("sales"), published_for("sales", "v2"), checkout_for("sales", tmp_path, "c2")).actions == ()


def test_a_rollout_that_fails_before_its_wait_leaves_the_serving_revision_latest(platform, tmp_path):
    """Runs use the family's latest ACTIVE revision: after any failed rollout it is the serving one.
    Before: only a circuit-breaker rollback retired the new revision."""
    deploy(platform, tmp_path)
    ecs = boto3.client("ecs")
    failures = []

    def fail_update(request, **_):
        failures.append(request.url)
        from botocore.awsrequest import AWSResponse
        from test_aws_gateway import _Raw

        body = b'{"__type":"InvalidParameterException","message":"no"}'
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))

    platform.gateway.ecs.meta.events.register("before-send.ecs.UpdateService", fail_update)
    with pytest.raises(AwsOperationError) as info:
        deploy(platform, tmp_path, seed="v2", commit="c2")
    assert "Deregistered dagster-repo-sales:2; runs keep using dagster-repo-sales:1" in str(info.value)
    # (moto's DescribeTaskDefinition by family returns the newest revision even when INACTIVE; AWS
    # returns the latest ACTIVE one: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTaskDefinition.html)
    assert [a.rsplit(":", 1)[-1] for a in active_revisions()] == ["1"]
    svc = ecs.describe_services(cluster="dagster", services=["sales"])["services"][0]
    assert svc["taskDefinition"].endswith("dagster-repo-sales:1")
