"""Desired AWS resources of one repo, and the plan that converges live state to them (pure).

This module imports no boto3. It has three parts:

1. **Desired state.** :func:`desired_repo` turns a spec, the published image
   (by digest), the commit and the :class:`EcsSettings` into a
   :class:`DesiredRepo`: the task role and its inline policy, the log group,
   the Cloud Map service, the optional target group and listener rule, the
   task definition and the ECS service, plus the deployment record written as
   service tags once the rollout is stable.
2. **Observed state.** :class:`ObservedRepo` is what ``apply.observe_repo``
   read back from AWS (everything ``None`` when missing).
3. **The plan.** :func:`plan` compares the two and returns a :class:`Plan`
   of frozen actions, in the order they must run. ``apply.apply`` dispatches
   each to one gateway call; a dry run prints ``Plan.render()``. Planning
   again after a successful apply gives an empty plan.

Comparing a live task definition with the desired one is the classic trap:
AWS adds fields (``revision``, ``status``, ``compatibilities``, ``hostPort``,
``cpu: 0``, empty lists...). :func:`task_definition_matches` projects the live
definition onto the keys we set and treats missing and empty as equal, so an
unchanged deploy registers no new revision (tested), while any field we set
that differs does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meta_deployer import naming
from meta_deployer.errors import MetaDeployerError
from meta_deployer.model import CodeServer
from meta_deployer.platforms.aws.settings import DEFAULT_EXECUTION_ROLE_NAME, EcsSettings
from meta_deployer.spec import RepoSpec

#: Port every code server listens on inside its task (the runtime contract's CONTAINER_PORT;
#: this planner imports no runtime code, and a test checks that the two agree).
GRPC_PORT = 4000
#: Name of the container in every task definition (also given to EcsRunLauncher).
CONTAINER_NAME = "dagster"
#: Cloud Map A-record TTL: low, because the stable name can serve stale answers during a rollout.
DNS_TTL_S = 10
#: Container health check timing (the command comes from the code server: its gRPC health service).
HEALTH_CHECK_TIMING: dict[str, Any] = {"interval": 30, "timeout": 10, "retries": 3, "startPeriod": 60}
DEPLOYMENT_CONFIGURATION: dict[str, Any] = {
    "minimumHealthyPercent": 100,
    "maximumPercent": 200,
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
}
ECS_TASKS_PRINCIPAL = "ecs-tasks.amazonaws.com"
POLICY_VERSION = "2012-10-17"
#: Name of the task role's one inline policy.
TASK_POLICY_NAME = "repo-storage"
#: Awslogs stream prefix: streams are ``dagster/dagster/<task id>``.
LOG_STREAM_PREFIX = "dagster"
SHARED_PREFIX = "repos/shared/"
#: Listener rule priorities are derived from the name inside this range.
RULE_PRIORITY_RANGE = 49_000

#: Stands for "the digest the build will produce" in a dry run that builds nothing.
PENDING_DIGEST = "sha256:" + "0" * 64

# Deployment record, written as tags on the ECS service after a stable rollout.
TAG_COMMIT = "meta-deployer:commit"
TAG_BRANCH = "meta-deployer:branch"
TAG_IMAGE = "meta-deployer:image"
TAG_SPEC_HASH = "meta-deployer:spec-hash"
TAG_SETTINGS = "meta-deployer:settings"
TAG_ENDPOINT = "meta-deployer:endpoint"
RECORD_TAGS = (TAG_COMMIT, TAG_BRANCH, TAG_IMAGE, TAG_SPEC_HASH, TAG_SETTINGS, TAG_ENDPOINT)


class PlanError(MetaDeployerError):
    """The desired state cannot be built (missing digest, missing code source...)."""


@dataclass(frozen=True)
class AwsContext:
    """Facts about the account the plan targets (read once through STS)."""

    account_id: str
    region: str
    partition: str = "aws"

    def role_arn(self, role_name: str) -> str:
        """The ARN of role ``role_name`` in this account."""
        return f"arn:{self.partition}:iam::{self.account_id}:role/{role_name}"


# --------------------------------------------------------------------------
# Desired state
# --------------------------------------------------------------------------


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no spaces: the form we send and compare."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def repo_tags(name: str) -> dict[str, str]:
    """Tags on every resource the deployer creates for ``name``."""
    return {naming.REPO_TAG_KEY: name}


def cloud_map_host(name: str, namespace: str) -> str:
    """The stable DNS name of the repo's code server."""
    return f"{naming.cloud_map_service(name)}.{namespace}"


def endpoint(name: str, namespace: str) -> str:
    """``<name>-service.<namespace>:4000``: where the workspace reaches the code server."""
    return f"{cloud_map_host(name, namespace)}:{GRPC_PORT}"


def workspace_entry(name: str, namespace: str) -> dict[str, Any]:
    """The ``grpc_server`` workspace entry pointing at the stable Cloud Map name."""
    return {"grpc_server": {"host": cloud_map_host(name, namespace), "port": GRPC_PORT, "location_name": name}}


def image_by_digest(ref: str, digest: str | None) -> str:
    """``repo@sha256:...`` for ``ref`` (``repo[:tag]`` or already ``repo@digest``)."""
    if "@sha256:" in ref:
        return ref
    if not digest or not digest.startswith("sha256:") or len(digest) != len("sha256:") + 64:
        raise PlanError(
            f"image {ref!r} has no sha256 digest ({digest!r}); the ecs platform references images by digest, "
            "so publish must push the image and report its digest"
        )
    last = ref.rsplit("/", 1)
    if ":" in last[-1]:
        last[-1] = last[-1].split(":", 1)[0]
    return "/".join(last) + "@" + digest


def trust_policy() -> dict[str, Any]:
    """Trust policy of every task role: only ECS tasks may assume it."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": ECS_TASKS_PRINCIPAL}, "Action": "sts:AssumeRole"}
        ],
    }


def task_role_policy(bucket: str, name: str, read: Sequence[str] = (), partition: str = "aws") -> dict[str, Any]:
    """The task role's only inline policy: its own prefix read-write, shared and granted prefixes read-only.

    Every prefix ends with ``/`` so that ``repos/a/`` never matches ``repos/a-evil/``.
    """
    own = f"{naming.s3_prefix(name)}/"
    readable = [SHARED_PREFIX] + [f"{naming.s3_prefix(other)}/" for other in sorted(set(read)) if other != name]
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "OwnPrefixReadWrite",
                "Effect": "Allow",
                "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                "Resource": [f"{bucket_arn}/{own}*"],
            },
            {
                "Sid": "SharedAndGrantedPrefixesReadOnly",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"{bucket_arn}/{p}*" for p in readable],
            },
            {
                "Sid": "ListOnlyReadablePrefixes",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [bucket_arn],
                "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in [own, *readable]]}},
            },
        ],
    }


def execution_role_arn(settings: EcsSettings, ctx: AwsContext) -> str:
    """``META_DEPLOYER_EXECUTION_ROLE_ARN``, or the role ``make bootstrap`` creates."""
    return settings.execution_role_arn or ctx.role_arn(DEFAULT_EXECUTION_ROLE_NAME)


def container_context(spec: RepoSpec, settings: EcsSettings, ctx: AwsContext, env: Mapping[str, str]) -> dict[str, Any]:
    """``DAGSTER_CONTAINER_CONTEXT`` for the code server, so EcsRunLauncher runs match it.

    The ``ecs`` block of dagster-aws 0.29 has no log-group key (it rejects
    unknown keys), so runs get the repo's log group, role, image and secrets
    through ``task_definition_arn``: the repo's own family, whose latest ACTIVE
    revision is the one serving.
    """
    family = naming.task_family(spec.name)
    return {
        "ecs": {
            "task_definition_arn": family,
            "container_name": CONTAINER_NAME,
            "task_role_arn": ctx.role_arn(naming.task_role(spec.name)),
            "execution_role_arn": execution_role_arn(settings, ctx),
            "env_vars": [f"{k}={v}" for k, v in sorted(env.items())],
            "secrets": [{"name": s.name, "valueFrom": s.value_from} for s in sorted(spec.secrets, key=lambda s: s.name)],
            "run_resources": {"cpu": str(spec.resources.cpu), "memory": str(spec.resources.memory)},
            "run_ecs_tags": [{"key": naming.REPO_TAG_KEY, "value": spec.name}],
        }
    }


def task_definition(
    spec: RepoSpec, image: str, settings: EcsSettings, ctx: AwsContext, server: CodeServer
) -> dict[str, Any]:
    """The ``RegisterTaskDefinition`` request (without tags) for the repo's code server."""
    log_group = naming.log_group(spec.name)
    # The task serves the location entry point, as the docker platform does; runs that
    # EcsRunLauncher starts from this family get the same environment.
    env = dict(server.environment)
    full_env = {
        **env,
        "DAGSTER_CURRENT_IMAGE": image,
        "DAGSTER_CONTAINER_CONTEXT": canonical_json(container_context(spec, settings, ctx, env)),
    }
    container = {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        # A soft limit equal to the task's memory: harmless on Fargate, and emulators
        # (moto's RunTask) need a container-level memory value to place the task.
        "memoryReservation": spec.resources.memory,
        "command": list(server.command),
        "portMappings": [{"containerPort": server.port, "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(full_env.items())],
        "secrets": [{"name": s.name, "valueFrom": s.value_from} for s in sorted(spec.secrets, key=lambda s: s.name)],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": ctx.region,
                "awslogs-stream-prefix": LOG_STREAM_PREFIX,
            },
        },
        "healthCheck": {"command": ["CMD", *server.health_command], **HEALTH_CHECK_TIMING},
    }
    return {
        "family": naming.task_family(spec.name),
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": str(spec.resources.cpu),
        "memory": str(spec.resources.memory),
        "taskRoleArn": ctx.role_arn(naming.task_role(spec.name)),
        "executionRoleArn": execution_role_arn(settings, ctx),
        "containerDefinitions": [container],
    }


@dataclass(frozen=True)
class DesiredRole:
    """The task role: trust policy and its one inline policy."""

    name: str
    trust_policy: dict[str, Any]
    policy_name: str
    policy: dict[str, Any]
    tags: dict[str, str]


@dataclass(frozen=True)
class DesiredLogGroup:
    """The repo's log group and its retention."""

    name: str
    retention_days: int
    tags: dict[str, str]


@dataclass(frozen=True)
class DesiredDiscovery:
    """The Cloud Map service giving the stable DNS name."""

    name: str
    namespace: str
    ttl: int
    tags: dict[str, str]


@dataclass(frozen=True)
class DesiredTargetGroup:
    """The optional gRPC target group and its listener rule."""

    name: str
    vpc_id: str
    listener_arn: str
    host: str
    priority: int
    tags: dict[str, str]


@dataclass(frozen=True)
class DesiredService:
    """The ECS service's settings (the task definition is planned apart)."""

    cluster: str
    name: str
    desired_count: int
    health_check_grace_s: int
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    tags: dict[str, str]


@dataclass(frozen=True)
class DesiredRepo:
    """Everything the ecs platform keeps in AWS for one repo."""

    name: str
    role: DesiredRole
    log_group: DesiredLogGroup
    discovery: DesiredDiscovery
    target_group: DesiredTargetGroup | None
    task_definition: dict[str, Any]
    task_definition_tags: dict[str, str]
    service: DesiredService
    record: dict[str, str]  # deployment record tags, written once the rollout is stable
    keep_revisions: int
    stability_timeout_s: float

    @property
    def family(self) -> str:
        """The task definition family."""
        return self.task_definition["family"]


def rule_priority(name: str) -> int:
    """A listener rule priority derived from the name (1..RULE_PRIORITY_RANGE)."""
    return 1 + int(hashlib.sha256(name.encode()).hexdigest(), 16) % RULE_PRIORITY_RANGE


def desired_repo(
    spec: RepoSpec,
    image_ref: str,
    digest: str | None,
    commit: str,
    branch: str,
    settings: EcsSettings,
    ctx: AwsContext,
    server: CodeServer,
) -> DesiredRepo:
    """The desired resources of ``spec`` deployed from ``image_ref`` (pinned by ``digest``) at ``commit``,
    its code server started as ``server`` says."""
    name = spec.name
    tags = repo_tags(name)
    image = image_by_digest(image_ref, digest)
    target_group = None
    if settings.lb_listener_arn:
        if not settings.vpc_id:
            raise PlanError("META_DEPLOYER_VPC_ID must be set when META_DEPLOYER_LB_LISTENER_ARN is (the target group lives in it)")
        target_group = DesiredTargetGroup(
            name=naming.target_group(name),
            vpc_id=settings.vpc_id,
            listener_arn=settings.lb_listener_arn,
            host=cloud_map_host(name, settings.namespace),
            priority=rule_priority(name),
            tags=tags,
        )
    return DesiredRepo(
        name=name,
        role=DesiredRole(
            name=naming.task_role(name),
            trust_policy=trust_policy(),
            policy_name=TASK_POLICY_NAME,
            policy=task_role_policy(settings.bucket, name, spec.access.read, ctx.partition),
            tags=tags,
        ),
        log_group=DesiredLogGroup(naming.log_group(name), settings.log_retention_days, tags),
        discovery=DesiredDiscovery(naming.cloud_map_service(name), settings.namespace, DNS_TTL_S, tags),
        target_group=target_group,
        task_definition=task_definition(spec, image, settings, ctx, server),
        task_definition_tags=tags,
        service=DesiredService(
            cluster=settings.cluster,
            name=naming.ecs_service(name),
            desired_count=settings.desired_count,
            health_check_grace_s=settings.health_check_grace_s,
            subnets=settings.subnets,
            security_groups=settings.security_groups,
            tags=tags,
        ),
        record={
            **tags,
            TAG_COMMIT: commit,
            TAG_BRANCH: branch,
            TAG_IMAGE: image,
            TAG_SPEC_HASH: spec.content_hash(),
            TAG_SETTINGS: settings.deploy_fingerprint(),
            TAG_ENDPOINT: endpoint(name, settings.namespace),
        },
        keep_revisions=settings.keep_revisions,
        stability_timeout_s=settings.stability_timeout_s,
    )


# --------------------------------------------------------------------------
# Observed state
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ObservedRepo:
    """Live state of one repo's resources; ``None`` means missing."""

    role: dict[str, Any] | None = None  # IAM Role, trust policy decoded
    role_policy: dict[str, Any] | None = None  # decoded inline policy document
    role_policies: tuple[str, ...] = ()  # every inline policy name (for removal)
    log_group: dict[str, Any] | None = None
    namespace_id: str | None = None
    discovery: dict[str, Any] | None = None  # Cloud Map service (Id, Arn, DnsConfig)
    target_group: dict[str, Any] | None = None
    rule: dict[str, Any] | None = None
    task_definition: dict[str, Any] | None = None  # latest ACTIVE revision, with tagsDict
    active_revisions: tuple[str, ...] = ()  # ACTIVE revision ARNs, oldest first
    inactive_revisions: tuple[str, ...] = ()  # only read for a purge
    service: dict[str, Any] | None = None  # ACTIVE ECS service, with tagsDict
    ecr_repository: bool = False  # only read for a purge
    s3_objects: bool = False  # only read for a purge: anything under repos/<name>/


# --------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A value known only once an earlier action in the same plan ran (an ARN or id)."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"<{self.kind} {self.name}>"


@dataclass(frozen=True)
class Action:
    """Base class of plan steps; ``mutating`` is False only for waits."""

    mutating = True

    def describe(self) -> str:  # pragma: no cover - every action overrides it
        raise NotImplementedError


@dataclass(frozen=True)
class CreateLogGroup(Action):
    name: str
    tags: dict[str, str]

    def describe(self) -> str:
        return f"create log group {self.name}"


@dataclass(frozen=True)
class SetLogRetention(Action):
    name: str
    days: int

    def describe(self) -> str:
        return f"set retention of log group {self.name} to {self.days} days"


@dataclass(frozen=True)
class CreateRole(Action):
    name: str
    trust_policy: str
    tags: dict[str, str]

    def describe(self) -> str:
        return f"create IAM role {self.name} (trusted by {ECS_TASKS_PRINCIPAL})"


@dataclass(frozen=True)
class UpdateTrustPolicy(Action):
    role: str
    trust_policy: str

    def describe(self) -> str:
        return f"update trust policy of IAM role {self.role}"


@dataclass(frozen=True)
class PutRolePolicy(Action):
    role: str
    policy_name: str
    document: str

    def describe(self) -> str:
        return f"put inline policy {self.policy_name} on IAM role {self.role}"


@dataclass(frozen=True)
class CreateDiscoveryService(Action):
    name: str
    namespace: str
    namespace_id: str
    ttl: int
    tags: dict[str, str]

    def describe(self) -> str:
        return f"create Cloud Map service {self.name}.{self.namespace} (A record, TTL {self.ttl}s)"


@dataclass(frozen=True)
class UpdateDiscoveryTtl(Action):
    name: str
    service_id: str
    ttl: int

    def describe(self) -> str:
        return f"set TTL of Cloud Map service {self.name} to {self.ttl}s"


@dataclass(frozen=True)
class CreateTargetGroup(Action):
    name: str
    vpc_id: str
    tags: dict[str, str]

    def describe(self) -> str:
        return f"create gRPC target group {self.name} (port {GRPC_PORT})"


@dataclass(frozen=True)
class CreateListenerRule(Action):
    listener_arn: str
    priority: int
    host: str
    target_group: str | Ref
    tags: dict[str, str]

    def describe(self) -> str:
        return f"create listener rule host={self.host} priority={self.priority} -> {self.target_group}"


@dataclass(frozen=True)
class RegisterTaskDefinition(Action):
    family: str
    definition: str  # canonical JSON of the request
    tags: dict[str, str]
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return f"register task definition {self.family} ({'; '.join(self.reasons)})"


@dataclass(frozen=True)
class CreateService(Action):
    cluster: str
    name: str
    request: str  # canonical JSON; Refs are filled in by the executor
    task_definition: str | Ref
    registry: str | Ref
    target_group: str | Ref | None
    tags: dict[str, str]

    def describe(self) -> str:
        return f"create ECS service {self.name} in cluster {self.cluster} ({self.task_definition})"


@dataclass(frozen=True)
class UpdateService(Action):
    cluster: str
    name: str
    request: str
    task_definition: str | Ref
    registry: str | Ref
    target_group: str | Ref | None
    reasons: tuple[str, ...]
    fields: tuple[str, ...]  # UpdateService request keys to send: only what differs

    def describe(self) -> str:
        return f"update ECS service {self.name} in cluster {self.cluster} ({'; '.join(self.reasons)})"


@dataclass(frozen=True)
class WaitStable(Action):
    cluster: str
    name: str
    task_definition: str | Ref
    log_group: str
    timeout_s: float
    mutating = False

    def describe(self) -> str:
        return f"wait up to {self.timeout_s:g}s for ECS service {self.name} to be stable on {self.task_definition}"


@dataclass(frozen=True)
class TagService(Action):
    cluster: str
    name: str
    arn: str | Ref
    tags: dict[str, str]

    def describe(self) -> str:
        shown = {k.split(":", 1)[-1]: v[:12] if k == TAG_COMMIT else v for k, v in self.tags.items() if k in RECORD_TAGS[:3]}
        return f"record deployment on ECS service {self.name}: {shown}"


@dataclass(frozen=True)
class DeregisterTaskDefinitions(Action):
    arns: tuple[str, ...]
    delete: bool = False

    def describe(self) -> str:
        revisions = ", ".join(a.rsplit("/", 1)[-1] for a in self.arns)
        return f"{'delete' if self.delete else 'deregister'} task definition revisions {revisions}"


@dataclass(frozen=True)
class ScaleServiceToZero(Action):
    cluster: str
    name: str

    def describe(self) -> str:
        return f"scale ECS service {self.name} to 0"


@dataclass(frozen=True)
class DeleteService(Action):
    cluster: str
    name: str

    def describe(self) -> str:
        return f"delete ECS service {self.name} from cluster {self.cluster}"


@dataclass(frozen=True)
class DeleteDiscoveryService(Action):
    name: str
    service_id: str
    timeout_s: float

    def describe(self) -> str:
        return f"delete Cloud Map service {self.name}"


@dataclass(frozen=True)
class DeleteListenerRule(Action):
    arn: str

    def describe(self) -> str:
        return f"delete listener rule {self.arn.rsplit('/', 1)[-1]}"


@dataclass(frozen=True)
class DeleteTargetGroup(Action):
    name: str
    arn: str

    def describe(self) -> str:
        return f"delete target group {self.name}"


@dataclass(frozen=True)
class DeleteRolePolicy(Action):
    role: str
    policy_name: str

    def describe(self) -> str:
        return f"delete inline policy {self.policy_name} of IAM role {self.role}"


@dataclass(frozen=True)
class DeleteRole(Action):
    name: str

    def describe(self) -> str:
        return f"delete IAM role {self.name}"


@dataclass(frozen=True)
class DeleteLogGroup(Action):
    name: str

    def describe(self) -> str:
        return f"delete log group {self.name} (PURGE)"


@dataclass(frozen=True)
class DeleteEcrRepository(Action):
    name: str

    def describe(self) -> str:
        return f"delete ECR repository {self.name} and its images (PURGE)"


@dataclass(frozen=True)
class DeleteS3Prefix(Action):
    bucket: str
    prefix: str

    def describe(self) -> str:
        return f"delete every object under s3://{self.bucket}/{self.prefix} (PURGE)"


@dataclass(frozen=True)
class Plan:
    """Frozen, ordered actions for one repo. Empty means nothing to do."""

    name: str
    actions: tuple[Action, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.actions)

    @property
    def mutating(self) -> tuple[Action, ...]:
        """The actions that change AWS (every action but waits)."""
        return tuple(a for a in self.actions if a.mutating)

    def render(self) -> str:
        """The plan as text, one numbered action a line (what a dry run prints)."""
        if not self.actions:
            return f"{self.name}: nothing to do"
        lines = [f"{self.name}: {len(self.actions)} action(s)"]
        lines += [f"  {i}. {a.describe()}" for i, a in enumerate(self.actions, 1)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


# --------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or value == ""


def _sorted_named(items: list[Any]) -> list[Any]:
    if all(isinstance(i, dict) and "name" in i for i in items):
        return sorted(items, key=lambda i: i["name"])
    return items


def projection_differences(desired: Any, live: Any, path: str = "") -> list[str]:
    """Paths where ``live`` differs from ``desired``, looking only at keys ``desired`` sets.

    Missing and empty count as equal; lists of ``{"name": ...}`` items are
    compared by name (AWS may reorder environment and secrets).
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [] if _empty(desired) and _empty(live) else [path or "."]
        diffs = []
        for key, value in desired.items():
            diffs += projection_differences(value, live.get(key), f"{path}.{key}" if path else key)
        return diffs
    if isinstance(desired, list):
        if _empty(desired) and _empty(live):
            return []
        if not isinstance(live, list) or len(live) != len(desired):
            return [path]
        diffs = []
        for i, (d, v) in enumerate(zip(_sorted_named(desired), _sorted_named(live))):
            diffs += projection_differences(d, v, f"{path}[{i}]")
        return diffs
    if _empty(desired) and _empty(live):
        return []
    return [] if desired == live else [path]


def task_definition_differences(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> list[str]:
    """Why the live task definition is not the desired one (empty: reuse it)."""
    if live is None:
        return ["no active revision"]
    return projection_differences(dict(desired), dict(live))


def task_definition_matches(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """True when the live revision can be reused as it is."""
    return not task_definition_differences(desired, live)


def revision_of(arn_or_family_rev: str) -> str:
    """``family:revision`` from an ARN or a ``family:revision`` string."""
    return arn_or_family_rev.rsplit("/", 1)[-1]


def _service_request(service: DesiredService) -> dict[str, Any]:
    request: dict[str, Any] = {
        "cluster": service.cluster,
        "desiredCount": service.desired_count,
        "deploymentConfiguration": DEPLOYMENT_CONFIGURATION,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(service.subnets),
                "securityGroups": list(service.security_groups),
                "assignPublicIp": "DISABLED",
            }
        },
        "healthCheckGracePeriodSeconds": service.health_check_grace_s,
    }
    return request


def service_differences(
    desired: DesiredService,
    live: Mapping[str, Any],
    task_definition: str,
    registry_arn: str,
    target_group_arn: str | None,
) -> list[tuple[str, str]]:
    """``(UpdateService field, why)`` for each field of the live service to change (empty: leave it).

    Values not known yet (a :class:`Ref` rendered as text) never match a live
    ARN, so a resource created in the same plan always updates the service.
    """
    diffs = []
    live_td = revision_of(live.get("taskDefinition") or "-")
    if live_td != revision_of(task_definition):
        diffs.append(("taskDefinition", f"task definition {live_td} -> {revision_of(task_definition)}"))
    if live.get("desiredCount") != desired.desired_count:
        diffs.append(("desiredCount", f"desired count {live.get('desiredCount')} -> {desired.desired_count}"))
    if projection_differences(DEPLOYMENT_CONFIGURATION, live.get("deploymentConfiguration") or {}):
        diffs.append(("deploymentConfiguration", "deployment configuration"))
    if (live.get("healthCheckGracePeriodSeconds") or 0) != desired.health_check_grace_s:
        diffs.append(("healthCheckGracePeriodSeconds", "health check grace period"))
    net = (live.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
    if (
        sorted(net.get("subnets") or []) != list(desired.subnets)
        or sorted(net.get("securityGroups") or []) != list(desired.security_groups)
        or net.get("assignPublicIp", "DISABLED") != "DISABLED"
    ):
        diffs.append(("networkConfiguration", "network configuration"))
    if [r.get("registryArn") for r in live.get("serviceRegistries") or []] != [registry_arn]:
        diffs.append(("serviceRegistries", "Cloud Map registration"))
    balancers = [lb.get("targetGroupArn") for lb in live.get("loadBalancers") or []]
    if balancers != ([target_group_arn] if target_group_arn else []):
        diffs.append(("loadBalancers", "load balancer"))
    return diffs


def service_is_stable(service: Mapping[str, Any], task_definition: str | None = None) -> bool:
    """One COMPLETED primary deployment on the desired revision, running every desired task."""
    deployments = service.get("deployments") or []
    primary = [d for d in deployments if d.get("status") == "PRIMARY"]
    if service.get("status") != "ACTIVE" or len(deployments) != 1 or len(primary) != 1:
        return False
    if primary[0].get("rolloutState") not in (None, "COMPLETED"):
        return False
    if task_definition is not None and revision_of(service.get("taskDefinition", "")) != revision_of(task_definition):
        return False
    return service.get("runningCount", 0) >= service.get("desiredCount", 0)


def rollout_failed(service: Mapping[str, Any], task_definition: str | None = None) -> str | None:
    """Why the rollout of ``task_definition`` failed (circuit breaker, rollback), else None.

    A deployment marked FAILED is reported; so is a service that no longer runs
    ``task_definition`` in any deployment (the circuit breaker rolled it back).
    """
    deployments = service.get("deployments") or []
    for deployment in deployments:
        if deployment.get("rolloutState") == "FAILED" and (
            task_definition is None or revision_of(deployment.get("taskDefinition") or task_definition) == revision_of(task_definition)
        ):
            return deployment.get("rolloutStateReason") or "rollout FAILED"
    if task_definition is not None and revision_of(service.get("taskDefinition") or "") != revision_of(task_definition):
        if not any(revision_of(d.get("taskDefinition") or "") == revision_of(task_definition) for d in deployments):
            return f"rolled back to {revision_of(service.get('taskDefinition') or '-')}"
    return None


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------


def plan(desired: DesiredRepo, observed: ObservedRepo) -> Plan:
    """Actions that converge ``observed`` to ``desired``, in order (pure)."""
    actions: list[Action] = []

    # Log group first: tasks fail to start when their awslogs group is missing.
    lg = desired.log_group
    if observed.log_group is None:
        actions += [CreateLogGroup(lg.name, lg.tags), SetLogRetention(lg.name, lg.retention_days)]
    elif observed.log_group.get("retentionInDays") != lg.retention_days:
        actions.append(SetLogRetention(lg.name, lg.retention_days))

    role = desired.role
    if observed.role is None:
        actions.append(CreateRole(role.name, canonical_json(role.trust_policy), role.tags))
    elif observed.role.get("AssumeRolePolicyDocument") != role.trust_policy:
        actions.append(UpdateTrustPolicy(role.name, canonical_json(role.trust_policy)))
    if observed.role is None or observed.role_policy != role.policy:
        actions.append(PutRolePolicy(role.name, role.policy_name, canonical_json(role.policy)))

    disc = desired.discovery
    if observed.namespace_id is None:
        raise PlanError(
            f"Cloud Map namespace {disc.namespace!r} does not exist; run 'make bootstrap' "
            "(or set META_DEPLOYER_NAMESPACE to an existing private DNS namespace)"
        )
    registry: str | Ref
    if observed.discovery is None:
        actions.append(CreateDiscoveryService(disc.name, disc.namespace, observed.namespace_id, disc.ttl, disc.tags))
        registry = Ref("cloud-map-service", disc.name)
    else:
        registry = observed.discovery["Arn"]
        records = (observed.discovery.get("DnsConfig") or {}).get("DnsRecords") or []
        if [r.get("TTL") for r in records] != [disc.ttl]:
            actions.append(UpdateDiscoveryTtl(disc.name, observed.discovery["Id"], disc.ttl))

    target_group: str | Ref | None = None
    tg = desired.target_group
    if tg is not None:
        if observed.target_group is None:
            actions.append(CreateTargetGroup(tg.name, tg.vpc_id, tg.tags))
            target_group = Ref("target-group", tg.name)
        else:
            target_group = observed.target_group["TargetGroupArn"]
        if observed.rule is None:
            actions.append(CreateListenerRule(tg.listener_arn, tg.priority, tg.host, target_group, tg.tags))

    td_reasons = task_definition_differences(desired.task_definition, observed.task_definition)
    task_def: str | Ref
    if td_reasons:
        actions.append(
            RegisterTaskDefinition(
                desired.family, canonical_json(desired.task_definition), desired.task_definition_tags,
                tuple(td_reasons[:5]) + (("...",) if len(td_reasons) > 5 else ()),
            )
        )
        task_def = Ref("task-definition", desired.family)
    else:
        assert observed.task_definition is not None
        task_def = revision_of(observed.task_definition["taskDefinitionArn"])

    svc = desired.service
    request = canonical_json(_service_request(svc))
    changed_service = False
    if observed.service is None:
        actions.append(CreateService(svc.cluster, svc.name, request, task_def, registry, target_group, svc.tags))
        changed_service = True
    else:
        diffs = service_differences(
            svc, observed.service, str(task_def), str(registry), None if target_group is None else str(target_group)
        )
        if diffs:
            actions.append(
                UpdateService(
                    svc.cluster, svc.name, request, task_def, registry, target_group,
                    reasons=tuple(why for _, why in diffs), fields=tuple(f for f, _ in diffs),
                )
            )
            changed_service = True

    if changed_service or not service_is_stable(observed.service or {}):
        actions.append(WaitStable(svc.cluster, svc.name, task_def, lg.name, desired.stability_timeout_s))

    live_tags = (observed.service or {}).get("tagsDict") or {}
    if changed_service or any(live_tags.get(k) != v for k, v in desired.record.items()):
        arn: str | Ref = (observed.service or {}).get("serviceArn") or Ref("ecs-service", svc.name)
        actions.append(TagService(svc.cluster, svc.name, arn, desired.record))

    # Keep the newest revisions (the one serving included) for rollback; retire the rest.
    keep = desired.keep_revisions - (1 if isinstance(task_def, Ref) else 0)
    active = list(observed.active_revisions)
    serving = None if isinstance(task_def, Ref) else task_def
    old = [a for a in (active[:-keep] if keep > 0 else active) if revision_of(a) != serving]
    if old:
        actions.append(DeregisterTaskDefinitions(tuple(old)))
    return Plan(desired.name, tuple(actions))


def plan_removal(
    name: str,
    observed: ObservedRepo,
    cluster: str,
    purge: bool,
    bucket: str,
    timeout_s: float,
) -> Plan:
    """Actions that remove what serves ``name``; with ``purge`` also its logs, images and data (pure)."""
    actions: list[Action] = []
    service = observed.service
    if service is not None:
        if service.get("desiredCount", 0) > 0:
            actions.append(ScaleServiceToZero(cluster, service["serviceName"]))
        actions.append(DeleteService(cluster, service["serviceName"]))
    if observed.discovery is not None:
        actions.append(DeleteDiscoveryService(observed.discovery["Name"], observed.discovery["Id"], timeout_s))
    if observed.rule is not None:
        actions.append(DeleteListenerRule(observed.rule["RuleArn"]))
    if observed.target_group is not None:
        actions.append(DeleteTargetGroup(observed.target_group["TargetGroupName"], observed.target_group["TargetGroupArn"]))
    if observed.role is not None:
        role = observed.role["RoleName"]
        actions += [DeleteRolePolicy(role, p) for p in observed.role_policies]
        actions.append(DeleteRole(role))
    if purge:
        every = tuple(observed.active_revisions) + tuple(observed.inactive_revisions)
        if every:
            actions.append(DeregisterTaskDefinitions(every, delete=True))
        if observed.log_group is not None:
            actions.append(DeleteLogGroup(observed.log_group["logGroupName"]))
        if observed.ecr_repository:
            actions.append(DeleteEcrRepository(naming.ecr_repository(name)))
        if observed.s3_objects:
            actions.append(DeleteS3Prefix(bucket, f"{naming.s3_prefix(name)}/"))
    elif observed.active_revisions:
        actions.append(DeregisterTaskDefinitions(observed.active_revisions))
    return Plan(name, tuple(actions))
