"""Pure tests of the ECS planner: desired resources, the IAM policy, normalisation, plans."""

from __future__ import annotations

import copy
import json

import pytest
from dagster_aws.ecs.container_context import EcsContainerContext

from meta_deployer import naming
from meta_deployer.platforms import location
from meta_deployer.platforms.ecs import code_server
from meta_deployer_runtime import contract
from meta_deployer.platforms.aws import plan as p
from meta_deployer.platforms.aws.settings import EcsSettings
from meta_deployer.errors import SettingsError, SpecError
from meta_deployer.spec import parse_spec

CTX = p.AwsContext(account_id="123456789012", region="eu-west-1")
SETTINGS = EcsSettings(subnets=("subnet-1", "subnet-2"), security_groups=("sg-1",), vpc_id="vpc-1", bucket="bkt")
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/dagster/sales:abc123-def"


def spec(name: str = "sales", **fields):
    data = {"name": name, "git_url": "https://example.com/x.git", "python_file": "defs.py", **fields}
    return parse_spec(data, "config.yml")


def desired(s=None, settings=SETTINGS, image=IMAGE, digest=DIGEST, commit="c" * 40):
    s = s or spec()
    return p.desired_repo(s, image, digest, commit, "main", settings, CTX, code_server(s, settings.bucket))


# -- IAM ---------------------------------------------------------------------


def _statements(policy):
    return {s["Sid"]: s for s in policy["Statement"]}


def test_policy_grants_own_prefix_read_write_and_nothing_broader():
    policy = p.task_role_policy("bkt", "a")
    st = _statements(policy)
    assert st["OwnPrefixReadWrite"]["Resource"] == ["arn:aws:s3:::bkt/repos/a/*"]
    assert set(st["OwnPrefixReadWrite"]["Action"]) >= {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    assert st["SharedAndGrantedPrefixesReadOnly"]["Action"] == ["s3:GetObject"]
    assert st["SharedAndGrantedPrefixesReadOnly"]["Resource"] == ["arn:aws:s3:::bkt/repos/shared/*"]
    listing = st["ListOnlyReadablePrefixes"]
    assert listing["Action"] == ["s3:ListBucket"] and listing["Resource"] == ["arn:aws:s3:::bkt"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["repos/a/*", "repos/shared/*"]}}
    text = json.dumps(policy)
    assert '"*"' not in text and "s3:*" not in text


def test_every_prefix_ends_with_a_slash():
    policy = p.task_role_policy("bkt", "a", read=("b", "c"))
    for statement in policy["Statement"]:
        for resource in statement["Resource"]:
            if resource != "arn:aws:s3:::bkt":
                assert resource.endswith("/*"), resource
        for value in statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix", []):
            assert value.endswith("/*"), value


def test_access_read_grants_read_only_on_listed_repos():
    st = _statements(p.task_role_policy("bkt", "a", read=("b",)))
    # A grant reaches b's assets only: never its code archives (repos/b/code/), outputs or logs.
    assert "arn:aws:s3:::bkt/repos/b/assets/*" in st["SharedAndGrantedPrefixesReadOnly"]["Resource"]
    assert "arn:aws:s3:::bkt/repos/b/*" not in st["SharedAndGrantedPrefixesReadOnly"]["Resource"]
    assert "arn:aws:s3:::bkt/repos/b/assets/*" not in st["OwnPrefixReadWrite"]["Resource"]
    assert "repos/b/assets/*" in st["ListOnlyReadablePrefixes"]["Condition"]["StringLike"]["s3:prefix"]


def test_trust_policy_only_ecs_tasks():
    trust = p.trust_policy()
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]


# -- task definition ---------------------------------------------------------------


def test_task_definition_fields():
    s = spec(
        environment=[{"name": "FOO", "value": "1"}],
        secrets=[{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dagster/sales/db"}],
        resources={"cpu": 512, "memory": 2048},
    )
    td = desired(s).task_definition
    assert td["family"] == "dagster-repo-sales"
    assert td["networkMode"] == "awsvpc" and td["requiresCompatibilities"] == ["FARGATE"]
    assert (td["cpu"], td["memory"]) == ("512", "2048")
    assert td["taskRoleArn"] == "arn:aws:iam::123456789012:role/dagster-repo-sales"
    assert td["executionRoleArn"] == "arn:aws:iam::123456789012:role/dagster-exec-sales"  # its own, never shared
    (c,) = td["containerDefinitions"]
    assert c["image"] == f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/dagster/sales@{DIGEST}"
    assert c["command"] == ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "4000", "--module-name", "meta_deployer_runtime.entrypoint"]
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert env["FOO"] == "1"
    assert env["META_DEPLOYER_REPO"] == "sales"
    assert env["META_DEPLOYER_BUCKET"] == "bkt"
    assert env["META_DEPLOYER_PREFIX"] == "repos/sales"
    assert "DB_PASSWORD" not in env
    assert c["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dagster/sales/db"}]
    assert c["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {"awslogs-group": "/dagster/repos/sales", "awslogs-region": "eu-west-1", "awslogs-stream-prefix": "dagster"},
    }
    assert c["healthCheck"]["command"] == ["CMD", "dagster", "api", "grpc-health-check", "-p", "4000"]
    assert c["portMappings"] == [{"containerPort": 4000, "protocol": "tcp"}]


@pytest.mark.parametrize(
    "fields",
    [
        {"python_file": "defs.py"},
        {"python_file": "defs.py", "working_directory": "src"},
        {"python_file": None, "module_name": "pkg.defs"},
        {"python_file": None, "package_name": "pkg", "working_directory": "src"},
    ],
)
def test_task_serves_the_entry_point_the_images_step_validated(fields):
    s = spec(**{k: v for k, v in fields.items() if v is not None}) if fields.get("python_file") else parse_spec(
        {"name": "sales", "git_url": "https://example.com/x.git", **{k: v for k, v in fields.items() if v is not None}},
        "config.yml",
    )
    (c,) = desired(s).task_definition["containerDefinitions"]
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert c["command"] == location.entrypoint_command()
    assert {k: env[k] for k in location.code_source_env(s)} == location.code_source_env(s)
    assert env["META_DEPLOYER_WORKING_DIRECTORY"] == (s.working_directory or ".")
    # Validation serves the same entry point (the validator's default target) and asks it over gRPC.
    assert location.validate_command()[-1].endswith("-m meta_deployer_runtime.validate")
    from meta_deployer_runtime import validate as validator

    assert contract.ENTRYPOINT_MODULE in open(validator.__file__).read()
    assert p.GRPC_PORT == contract.CONTAINER_PORT  # the planner's copy of the contract's port


def test_container_context_is_valid_for_dagster_aws_and_names_role_and_family():
    s = spec(secrets=[{"name": "TOKEN_X", "valueFrom": "arn:aws:ssm:eu-west-1:123456789012:parameter/dagster/sales/x"}])
    (c,) = desired(s).task_definition["containerDefinitions"]
    env = {e["name"]: e["value"] for e in c["environment"]}
    context = json.loads(env["DAGSTER_CONTAINER_CONTEXT"])
    parsed = EcsContainerContext.create_from_config(context)  # raises on unknown keys
    assert parsed.task_role_arn == "arn:aws:iam::123456789012:role/dagster-repo-sales"
    assert parsed.task_definition_arn == "dagster-repo-sales"
    assert parsed.container_name == p.CONTAINER_NAME
    assert parsed.run_resources == {"cpu": "256", "memory": "512"}
    assert "META_DEPLOYER_REPO=sales" in parsed.env_vars
    assert parsed.secrets == [{"name": "TOKEN_X", "valueFrom": "arn:aws:ssm:eu-west-1:123456789012:parameter/dagster/sales/x"}]


def test_image_is_referenced_by_digest():
    assert p.image_by_digest("reg:5000/dagster/a:tag", DIGEST) == f"reg:5000/dagster/a@{DIGEST}"
    assert p.image_by_digest(f"reg/dagster/a@{DIGEST}", None) == f"reg/dagster/a@{DIGEST}"
    with pytest.raises(p.PlanError, match="digest"):
        p.image_by_digest("reg/dagster/a:tag", None)
    with pytest.raises(p.PlanError):
        p.image_by_digest("reg/dagster/a:tag", "sha256:short")


def test_missing_code_source_is_a_clear_error():
    s = parse_spec({"name": "sales", "git_url": "https://example.com/x.git"}, "config.yml")
    with pytest.raises(SpecError, match="python_file, module_name or package_name") as info:
        desired(s)
    assert "repos/sales/config.yml" in str(info.value)


# -- normalisation -------------------------------------------------------------------


def as_live(definition: dict, revision: int = 1) -> dict:
    """What DescribeTaskDefinition returns for ``definition``: AWS-added fields, reordered lists."""
    live = copy.deepcopy(definition)
    live.update(
        taskDefinitionArn=f"arn:aws:ecs:eu-west-1:123456789012:task-definition/{definition['family']}:{revision}",
        revision=revision, status="ACTIVE", compatibilities=["EC2", "FARGATE"], volumes=[], placementConstraints=[],
        requiresAttributes=[{"name": "com.amazonaws.ecs.capability.task-iam-role"}], registeredAt="2026-01-01",
        registeredBy="arn:aws:iam::123456789012:root", tagsDict={naming.REPO_TAG_KEY: definition["family"]},
    )
    c = live["containerDefinitions"][0]
    c.update(cpu=0, mountPoints=[], volumesFrom=[], systemControls=[])
    c["environment"] = list(reversed(c["environment"]))
    c["portMappings"] = [{**m, "hostPort": m["containerPort"]} for m in c["portMappings"]]
    return live


def test_unchanged_definition_matches_its_live_form():
    td = desired().task_definition
    assert p.task_definition_differences(td, as_live(td)) == []


@pytest.mark.parametrize(
    "change, path",
    [
        (lambda c: c.update(image="other@" + DIGEST), "containerDefinitions[0].image"),
        (lambda c: c["environment"].append({"name": "NEW", "value": "x"}), "containerDefinitions[0].environment"),
        (lambda c: c.update(secrets=[]), "containerDefinitions[0].secrets"),
    ],
)
def test_any_field_we_set_that_differs_is_reported(change, path):
    s = spec(secrets=[{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dagster/sales/db"}])
    td = desired(s).task_definition
    live = as_live(td)
    change(live["containerDefinitions"][0])
    assert path in p.task_definition_differences(td, live)


# -- plans ---------------------------------------------------------------------------


def observed_after(d: p.DesiredRepo) -> dict:
    """What AWS would report after a successful apply of ``d`` (one observation per kind)."""
    td = as_live(d.task_definition, 1)
    arn = td["taskDefinitionArn"]
    return dict(
        task_role={"role": {"RoleName": d.role.name, "AssumeRolePolicyDocument": d.role.trust_policy}, "policy": d.role.policy},
        execution_role={
            "role": {"RoleName": d.want("execution_role").name, "AssumeRolePolicyDocument": d.want("execution_role").trust_policy},
            "policy": d.want("execution_role").policy,
        },
        log_group={"logGroupName": d.log_group.name, "retentionInDays": d.log_group.retention_days},
        discovery={
            "namespace_id": "ns-1",
            "service": {"Id": "srv-1", "Arn": "arn:sd:srv-1", "Name": d.want("discovery").name, "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 10}]}},
        },
        task_definition=td,
        revisions={"active": (arn,), "inactive": ()},
        service={
            "serviceName": d.service.name, "serviceArn": "arn:svc", "status": "ACTIVE", "taskDefinition": arn,
            "desiredCount": 1, "runningCount": 1,
            "deploymentConfiguration": {**p.DEPLOYMENT_CONFIGURATION, "alarms": {"enable": False}},
            "healthCheckGracePeriodSeconds": SETTINGS.health_check_grace_s,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-2", "subnet-1"], "securityGroups": ["sg-1"], "assignPublicIp": "DISABLED"}},
            "serviceRegistries": [{"registryArn": "arn:sd:srv-1"}], "loadBalancers": [],
            "deployments": [{"status": "PRIMARY", "rolloutState": "COMPLETED", "taskDefinition": arn}],
            "tagsDict": dict(d.record),
        },
    )


def kinds(plan):
    return plan.operations


NO_NAMESPACE = {"discovery": {"namespace_id": None, "service": None}}
EMPTY = {"discovery": {"namespace_id": "ns-1", "service": None}}


def test_first_deploy_plans_everything_in_order():
    plan = p.plan(desired(), EMPTY)
    assert kinds(plan) == [
        "logs.CreateLogGroup", "logs.PutRetentionPolicy", "iam.CreateRole", "iam.PutRolePolicy",
        "iam.CreateRole", "iam.PutRolePolicy", "servicediscovery.CreateService", "ecs.RegisterTaskDefinition",
        "ecs.RunTaskToCompletion",  # the new revision's definitions load, before the service exists
        "ecs.CreateService", "wait.ServiceStable",
        "ecs.TagResource",
    ]
    assert "create ECS service sales" in plan.render()


def test_planning_against_the_applied_state_is_empty():
    d = desired()
    assert p.plan(d, observed_after(d)).actions == ()
    assert p.plan(d, observed_after(d)).render() == "sales: nothing to do"


def test_code_change_registers_and_rolls_out_a_revision():
    old = desired()
    new = desired(digest="sha256:" + "cd" * 32, commit="d" * 40)
    plan = p.plan(new, observed_after(old))
    assert kinds(plan) == [
        "ecs.RegisterTaskDefinition", "ecs.RunTaskToCompletion", "ecs.UpdateService", "wait.ServiceStable", "ecs.TagResource",
    ]


def test_commit_change_with_same_image_only_rewrites_the_record():
    old = desired()
    plan = p.plan(desired(commit="e" * 40), observed_after(old))
    assert kinds(plan) == ["ecs.TagResource"]


def test_unstable_service_is_waited_for_before_the_record_is_written():
    d = desired()
    obs = observed_after(d)
    service = dict(obs["service"], runningCount=0, deployments=[{"status": "PRIMARY", "rolloutState": "IN_PROGRESS"}])
    service["tagsDict"] = {naming.REPO_TAG_KEY: "sales"}
    plan = p.plan(d, {**obs, "service": service})
    assert kinds(plan) == ["wait.ServiceStable", "ecs.TagResource"]


def test_old_revisions_beyond_the_kept_ones_are_deregistered_after_the_rollout():
    d = desired()
    obs = observed_after(d)
    arns = tuple(f"arn:aws:ecs:eu-west-1:123456789012:task-definition/dagster-repo-sales:{i}" for i in range(1, 6))
    live = as_live(d.task_definition, 5)
    service = dict(obs["service"], taskDefinition=arns[-1])
    plan = p.plan(d, {**obs, "task_definition": live, "revisions": {"active": arns, "inactive": ()}, "service": service})
    assert kinds(plan) == ["ecs.DeregisterTaskDefinition"] * 2
    assert tuple(c.params["taskDefinition"] for c in plan.actions) == arns[:2]  # keeps 3, the serving one included


def test_missing_namespace_says_run_bootstrap():
    with pytest.raises(p.PlanError, match="make bootstrap"):
        p.plan(desired(), NO_NAMESPACE)


def test_load_balancer_adds_target_group_rule_and_registration():
    settings = EcsSettings(**{**SETTINGS.__dict__, "lb_listener_arn": "arn:listener"})
    plan = p.plan(desired(settings=settings), EMPTY)
    assert "elbv2.CreateTargetGroup" in kinds(plan) and "elbv2.CreateRule" in kinds(plan)
    create = next(a for a in plan.actions if a.label == "ecs.CreateService")
    assert isinstance(create.params["loadBalancers"][0]["targetGroupArn"], p.Output)


def test_removal_plan_order_and_purge():
    obs = dict(
        service={"serviceName": "sales", "desiredCount": 1},
        discovery={"namespace_id": "ns-1", "service": {"Id": "srv-1", "Name": "sales-service"}},
        task_role={"role": {"RoleName": "dagster-repo-sales"}, "policies": ("repo-storage",)},
        execution_role={"role": {"RoleName": "dagster-exec-sales"}, "policies": ("pull-own-image-write-own-logs-read-own-secrets",)},
        revisions={"active": ("arn:td:1",), "inactive": ()},
        log_group={"logGroupName": "/dagster/repos/sales"},
        ecr_repository=True,
        s3_data=True,
    )
    removal_settings = EcsSettings(**{**SETTINGS.__dict__, "cluster": "dagster", "stability_timeout_s": 1})
    keep = p.plan_removal("sales", obs, removal_settings, purge=False)
    assert kinds(keep) == [
        "ecs.UpdateService", "ecs.DeleteService", "servicediscovery.DeleteService", "iam.DeleteRolePolicy",
        "iam.DeleteRole", "iam.DeleteRolePolicy", "iam.DeleteRole", "ecs.DeregisterTaskDefinition",
    ]
    assert "scale ECS service sales to 0" in keep.render()
    assert "delete IAM role dagster-exec-sales" in keep.render()
    purge = p.plan_removal("sales", obs, removal_settings, purge=True)
    assert kinds(purge)[-3:] == ["logs.DeleteLogGroup", "ecr.DeleteRepository", "s3.DeletePrefix"]
    assert purge.actions[-1].prefix == "repos/sales/"
    assert p.plan_removal("sales", {}, removal_settings, purge=True).actions == ()


# -- names and settings -------------------------------------------------------------


def test_long_names_fit_aws_limits():
    name = "a" * 40
    assert len(naming.target_group(name)) <= 32
    assert len(naming.task_role(name)) <= 64
    assert naming.target_group(name) != naming.target_group("a" * 39 + "b")
    assert 1 <= p.allocate_priority(()) <= 50_000


def test_settings_from_env_defaults_and_errors():
    s = EcsSettings.from_env({})
    assert (s.cluster, s.namespace, s.bucket, s.log_retention_days, s.desired_count) == ("dagster", "local", "dagster-storage", 30, 1)
    s = EcsSettings.from_env({"META_DEPLOYER_SUBNETS": "b, a,", "META_DEPLOYER_LOG_RETENTION_DAYS": "14"})
    assert s.subnets == ("a", "b") and s.log_retention_days == 14
    with pytest.raises(SettingsError, match="retention"):
        EcsSettings.from_env({"META_DEPLOYER_LOG_RETENTION_DAYS": "31"})
    with pytest.raises(SettingsError, match="META_DEPLOYER_SUBNETS"):
        EcsSettings().require_network()
    assert EcsSettings().deploy_fingerprint() == EcsSettings(stability_timeout_s=1).deploy_fingerprint()
    assert EcsSettings().deploy_fingerprint() != EcsSettings(desired_count=2).deploy_fingerprint()


def test_rollout_failure_and_rollback_are_recognised():
    new = "arn:aws:ecs:eu-west-1:1:task-definition/dagster-repo-sales:2"
    old = "arn:aws:ecs:eu-west-1:1:task-definition/dagster-repo-sales:1"
    failing = {
        "status": "ACTIVE", "taskDefinition": new, "desiredCount": 1, "runningCount": 1,
        "deployments": [
            {"status": "PRIMARY", "taskDefinition": new, "rolloutState": "FAILED", "rolloutStateReason": "tasks failed to start"},
            {"status": "ACTIVE", "taskDefinition": old, "rolloutState": "COMPLETED"},
        ],
    }
    assert p.rollout_failed(failing, "dagster-repo-sales:2") == "tasks failed to start"
    rolled_back = {
        "status": "ACTIVE", "taskDefinition": old, "desiredCount": 1, "runningCount": 1,
        "deployments": [{"status": "PRIMARY", "taskDefinition": old, "rolloutState": "COMPLETED"}],
    }
    assert p.rollout_failed(rolled_back, "dagster-repo-sales:2") == "rolled back to dagster-repo-sales:1"
    assert not p.service_is_stable(rolled_back, "dagster-repo-sales:2")
    in_progress = {
        "status": "ACTIVE", "taskDefinition": new, "desiredCount": 1, "runningCount": 1,
        "deployments": [
            {"status": "PRIMARY", "taskDefinition": new, "rolloutState": "IN_PROGRESS"},
            {"status": "ACTIVE", "taskDefinition": old, "rolloutState": "COMPLETED"},
        ],
    }
    assert p.rollout_failed(in_progress, "dagster-repo-sales:2") is None
    assert not p.service_is_stable(in_progress, "dagster-repo-sales:2")


class _RolledBackGateway:
    """A gateway stand-in whose service the circuit breaker has rolled back (moto cannot do this)."""

    def __init__(self):
        self.deregistered: list[str] = []
        self.calls: list = []

    def get_service(self, cluster, name):
        old = "arn:aws:ecs:eu-west-1:1:task-definition/dagster-repo-sales:1"
        return {
            "status": "ACTIVE", "taskDefinition": old, "desiredCount": 1, "runningCount": 1,
            "deployments": [{"status": "PRIMARY", "taskDefinition": old, "rolloutState": "COMPLETED"}],
            "events": [{"createdAt": "t", "message": "(service sales) rolling back to deployment ecs-svc/1"}],
        }

    def stopped_tasks(self, cluster, name, limit):
        return [{"taskArn": "arn:task/abc", "stoppedReason": "Essential container in task exited",
                 "containers": [{"name": "dagster", "exitCode": 1}]}]

    def recent_log_events(self, group, tail):
        return [{"message": "ImportError: cannot import name 'defs'"}]

    def call(self, service, operation, params, *, resource, ok=()):
        assert (service, operation) == ("ecs", "DeregisterTaskDefinition")
        self.deregistered.append(params["taskDefinition"])


def test_a_rolled_back_rollout_fails_with_its_reasons_and_retires_the_failed_revision():
    from meta_deployer.platforms.aws.apply import Executor
    from meta_deployer.errors import UnhealthyError

    gateway = _RolledBackGateway()
    executor = Executor(gateway, lambda _: None, poll_interval_s=0)
    executor.responses["task_definition.register"] = {"taskDefinition": {"taskDefinitionArn": "dagster-repo-sales:2"}}
    new_revision = p.Output("task_definition.register", "taskDefinition.taskDefinitionArn")
    wait = p.WaitStable("dagster", "sales", new_revision, "/dagster/repos/sales", 5, retire_on_failure=True)
    with pytest.raises(UnhealthyError) as info:
        executor.run(p.Plan("sales", (wait,)))
    message = str(info.value)
    assert "rolled back to dagster-repo-sales:1" in message
    assert "rolling back to deployment" in message
    assert "Essential container in task exited" in message
    assert "ImportError: cannot import name 'defs'" in message
    assert "Deregistered dagster-repo-sales:2; runs keep using dagster-repo-sales:1" in message
    assert gateway.deregistered == ["dagster-repo-sales:2"]


class _TimedOutGateway(_RolledBackGateway):
    """The service keeps rolling out the new revision (ECS does not give up on our timeout)."""

    def __init__(self, fail_update: bool = False):
        super().__init__()
        self.sent: list[tuple[str, dict]] = []
        self.serving = "arn:aws:ecs:eu-west-1:1:task-definition/dagster-repo-sales:2"
        self.fail_update = fail_update

    def get_service(self, cluster, name):
        return {
            "status": "ACTIVE", "taskDefinition": self.serving, "desiredCount": 1, "runningCount": 0,
            "deployments": [{"status": "PRIMARY", "taskDefinition": self.serving, "rolloutState": "IN_PROGRESS"}],
        }

    def call(self, service, operation, params, *, resource, ok=()):
        from meta_deployer.errors import AwsOperationError

        self.sent.append((operation, dict(params)))
        if operation == "RegisterTaskDefinition":
            return {"taskDefinition": {"taskDefinitionArn": "arn:aws:ecs:eu-west-1:1:task-definition/dagster-repo-sales:2"}}
        if operation == "UpdateService" and "taskDefinition" in params and params["taskDefinition"].endswith(":2"):
            if self.fail_update:
                raise AwsOperationError("AWS update_service failed: InvalidParameterException")
            return {}
        if operation == "UpdateService":
            self.serving = params["taskDefinition"]
        return {}


def _rollout_plan():
    new = p.Output("register", "taskDefinition.taskDefinitionArn")
    register = p.Call("register", "ecs", "RegisterTaskDefinition", {}, "register", "td")
    update = p.Call("update", "ecs", "UpdateService", {"cluster": "dagster", "service": "sales", "taskDefinition": new}, "update", "svc")
    wait = p.WaitStable("dagster", "sales", new, "/dagster/repos/sales", 0.05, retire_on_failure=True, previous="dagster-repo-sales:1")
    return p.Plan("sales", (register, update, wait))


def test_a_timed_out_rollout_goes_back_to_the_serving_revision_and_retires_the_new_one():
    """Before: a timeout left the new revision ACTIVE (the family's latest, which runs use) and rolling out."""
    from meta_deployer.platforms.aws.apply import Executor
    from meta_deployer.errors import UnhealthyError

    gateway = _TimedOutGateway()
    with pytest.raises(UnhealthyError) as info:
        Executor(gateway, lambda _: None, poll_interval_s=0.01).run(_rollout_plan())
    ops = [op for op, _ in gateway.sent]
    assert ops == ["RegisterTaskDefinition", "UpdateService", "UpdateService", "DeregisterTaskDefinition"]
    assert gateway.sent[2][1] == {"cluster": "dagster", "service": "sales", "taskDefinition": "dagster-repo-sales:1"}
    assert gateway.sent[3][1]["taskDefinition"].endswith("dagster-repo-sales:2")
    assert "not stable within" in str(info.value)
    assert "Rolled ECS service sales back to dagster-repo-sales:1" in str(info.value)
    assert "runs keep using dagster-repo-sales:1" in str(info.value)


def test_a_failure_before_the_wait_retires_the_registered_revision():
    from meta_deployer.platforms.aws.apply import Executor
    from meta_deployer.errors import AwsOperationError

    gateway = _TimedOutGateway(fail_update=True)
    gateway.serving = "arn:aws:ecs:eu-west-1:1:task-definition/dagster-repo-sales:1"
    with pytest.raises(AwsOperationError) as info:
        Executor(gateway, lambda _: None, poll_interval_s=0.01).run(_rollout_plan())
    assert [op for op, _ in gateway.sent] == ["RegisterTaskDefinition", "UpdateService", "DeregisterTaskDefinition"]
    assert "Deregistered dagster-repo-sales:2; runs keep using dagster-repo-sales:1" in str(info.value)


def test_a_first_deploy_that_times_out_keeps_its_only_revision():
    from meta_deployer.platforms.aws.apply import Executor
    from meta_deployer.errors import UnhealthyError

    gateway = _TimedOutGateway()
    plan = _rollout_plan()
    plan = p.Plan("sales", (*plan.steps[:2], p.WaitStable("dagster", "sales", plan.steps[2].task_definition, "/g", 0.05, retire_on_failure=True)))
    with pytest.raises(UnhealthyError):
        Executor(gateway, lambda _: None, poll_interval_s=0.01).run(plan)
    assert [op for op, _ in gateway.sent] == ["RegisterTaskDefinition", "UpdateService"]


def test_a_revision_left_by_a_killed_deploy_is_retired_by_the_next_one():
    d = desired()
    obs = observed_after(d)
    serving = obs["service"]["taskDefinition"]
    abandoned = serving.replace(":1", ":2")
    plan = p.plan(d, {**obs, "revisions": {"active": (serving, abandoned), "inactive": ()}})
    assert kinds(plan) == ["ecs.DeregisterTaskDefinition"]
    assert plan.actions[0].params == {"taskDefinition": abandoned} and plan.actions[0].best_effort
    assert "never served" in plan.render()
