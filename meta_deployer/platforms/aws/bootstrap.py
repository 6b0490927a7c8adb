"""``make bootstrap``: the shared AWS pieces every repo's deploy relies on (idempotent).

It creates, only when missing:

- the bucket (``META_DEPLOYER_BUCKET``) with its layout: ``repos/``,
  ``repos/shared/``, ``system/`` and ``temp/`` (folder markers), and a
  lifecycle rule that expires ``temp/`` after ``META_DEPLOYER_TEMP_EXPIRY_DAYS``;
- the ECS cluster (``META_DEPLOYER_ECS_CLUSTER``);
- the Cloud Map private DNS namespace (``META_DEPLOYER_NAMESPACE``) in
  ``META_DEPLOYER_VPC_ID``;
- the shared task execution role (pulls images, writes logs, reads secrets
  under ``dagster/``), unless ``META_DEPLOYER_EXECUTION_ROLE_ARN`` names one.

Like a repo deploy, it is a plan (computed from what exists) and an apply; a
dry run prints the plan and changes nothing, and a second run plans nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.aws.plan import ECS_TASKS_PRINCIPAL, POLICY_VERSION, SHARED_PREFIX, canonical_json
from meta_deployer.platforms.aws.settings import DEFAULT_EXECUTION_ROLE_NAME, EcsSettings
from meta_deployer.errors import SettingsError
from meta_deployer.settings import Settings

#: Folder markers that make the bucket's layout visible.
BUCKET_LAYOUT = ("repos/", SHARED_PREFIX, "system/", "temp/")
TEMP_RULE_ID = "expire-temp"
#: The execution role's inline policy: what AmazonECSTaskExecutionRolePolicy grants, scoped to
#: our ECR repositories and log groups, plus reading the secrets tasks inject.
EXECUTION_POLICY = "pull-images-write-logs-read-secrets"
#: Secrets the execution role may inject: Secrets Manager ``dagster/*`` and SSM ``/dagster/*``.
SECRETS_PREFIX = "dagster/"
BOOTSTRAP_TAGS = {"meta-deployer:shared": "true"}


@dataclass(frozen=True)
class BootstrapStep:
    """One thing bootstrap creates or fixes."""

    kind: str
    target: str
    detail: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.target}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class BootstrapResult:
    """The plan, and whether it was applied."""

    steps: tuple[BootstrapStep, ...]
    applied: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    def render(self) -> str:
        """The plan as text (what a dry run prints)."""
        head = "bootstrap: nothing to do" if not self.steps else f"bootstrap: {len(self.steps)} step(s)" + (
            "" if self.applied else " (dry run, nothing changed)"
        )
        return "\n".join([head, *(f"  {i}. {s.describe()}" for i, s in enumerate(self.steps, 1)), *self.notes])


def temp_lifecycle_rule(days: int) -> dict[str, Any]:
    """The lifecycle rule expiring ``temp/`` after ``days``."""
    return {"ID": TEMP_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": "temp/"}, "Expiration": {"Days": days}}


def execution_trust_policy() -> str:
    """Trust policy of the shared execution role: ECS tasks only."""
    return canonical_json(
        {
            "Version": POLICY_VERSION,
            "Statement": [{"Effect": "Allow", "Principal": {"Service": ECS_TASKS_PRINCIPAL}, "Action": "sts:AssumeRole"}],
        }
    )


def execution_policy(partition: str, region: str, account: str) -> str:
    """Pull ``dagster/*`` images, write ``/dagster/repos/*`` logs, read ``dagster/*`` secrets."""
    return canonical_json(
        {
            "Version": POLICY_VERSION,
            "Statement": [
                {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
                {
                    "Effect": "Allow",
                    "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                    "Resource": [f"arn:{partition}:ecr:{region}:{account}:repository/dagster/*"],
                },
                {
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": [f"arn:{partition}:logs:{region}:{account}:log-group:/dagster/repos/*"],
                },
                {
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue"],
                    "Resource": [f"arn:{partition}:secretsmanager:{region}:{account}:secret:{SECRETS_PREFIX}*"],
                },
                {
                    "Effect": "Allow",
                    "Action": ["ssm:GetParameters"],
                    "Resource": [f"arn:{partition}:ssm:{region}:{account}:parameter/{SECRETS_PREFIX}*"],
                },
            ],
        }
    )


def bootstrap(
    settings: Settings,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
    *,
    gateway: AwsGateway | None = None,
    ecs_settings: EcsSettings | None = None,
) -> BootstrapResult:
    """Create the shared pieces that are missing; with ``dry_run`` only print what would be created."""
    ecs = ecs_settings or settings.ecs
    gw = gateway or AwsGateway(retry_mode=ecs.retry_mode, max_attempts=ecs.max_attempts)
    account, partition = gw.identity()
    region = gw.region
    steps: list[BootstrapStep] = []
    notes: list[str] = []
    actions: list[Callable[[], None]] = []

    def step(kind: str, target: str, detail: str, run: Callable[[], None]) -> None:
        steps.append(BootstrapStep(kind, target, detail))
        actions.append(run)

    bucket = ecs.bucket
    bucket_exists = gw.bucket_exists(bucket)
    if not bucket_exists:
        step("create bucket", f"s3://{bucket}", region, lambda: gw.create_bucket(bucket))
    present = gw.existing_keys(bucket, list(BUCKET_LAYOUT)) if bucket_exists else set()
    for key in BUCKET_LAYOUT:
        if key not in present:
            step("create folder", f"s3://{bucket}/{key}", "", lambda key=key: gw.put_marker(bucket, key))
    rules = gw.get_lifecycle_rules(bucket) if bucket_exists else []
    wanted = temp_lifecycle_rule(ecs.temp_expiry_days)
    current = next((r for r in rules if r.get("ID") == TEMP_RULE_ID), None)
    if current is None or current.get("Expiration", {}).get("Days") != ecs.temp_expiry_days or current.get("Status") != "Enabled":
        others = [r for r in rules if r.get("ID") != TEMP_RULE_ID]
        step(
            "set lifecycle", f"s3://{bucket}/temp/", f"expire after {ecs.temp_expiry_days} days",
            lambda: gw.put_lifecycle_rules(bucket, others + [wanted]),
        )

    if gw.get_cluster(ecs.cluster) is None:
        step("create cluster", ecs.cluster, "ECS, Fargate", lambda: gw.create_cluster(ecs.cluster, BOOTSTRAP_TAGS))

    if gw.find_namespace(ecs.namespace) is None:
        if not ecs.vpc_id:
            raise SettingsError(
                f"META_DEPLOYER_VPC_ID must be set to create the Cloud Map namespace {ecs.namespace!r} "
                "(the private DNS zone is attached to that VPC)"
            )
        vpc = ecs.vpc_id
        step(
            "create namespace", ecs.namespace, f"Cloud Map private DNS in {vpc}",
            lambda: gw.create_private_namespace(ecs.namespace, vpc, BOOTSTRAP_TAGS) and None,
        )

    if ecs.execution_role_arn:
        notes.append(f"execution role: using META_DEPLOYER_EXECUTION_ROLE_ARN={ecs.execution_role_arn} as is")
    else:
        role = DEFAULT_EXECUTION_ROLE_NAME
        document = execution_policy(partition, region, account)
        existing = gw.get_role(role)
        if existing is None:
            step("create role", role, "shared ECS task execution role", lambda: gw.create_role(
                role, execution_trust_policy(), BOOTSTRAP_TAGS, "meta_deployer shared ECS task execution role"
            ))
        current_doc = gw.get_role_policy(role, EXECUTION_POLICY) if existing is not None else None
        if current_doc is None or canonical_json(current_doc) != document:
            step(
                "put policy", role, f"pull dagster/* images, write /dagster/repos/* logs, read {SECRETS_PREFIX}* secrets",
                lambda: gw.put_role_policy(role, EXECUTION_POLICY, document),
            )

    result = BootstrapResult(tuple(steps), applied=not dry_run, notes=tuple(notes))
    log(result.render())
    if not dry_run:
        for i, (s, run) in enumerate(zip(steps, actions), 1):
            log(f"  [{i}/{len(steps)}] {s.describe()}")
            run()
    return result
