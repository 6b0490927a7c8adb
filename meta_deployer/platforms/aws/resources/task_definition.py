"""The repo's task definition: one value object, compared symmetrically with what AWS returns.

AWS adds fields to a registered definition (``revision``, ``status``,
``compatibilities``, ``registeredAt``, ``hostPort``, ``cpu: 0``, empty
lists...) and may reorder the environment. :func:`normalise` maps both the
request we would send and the described live definition into one shape (AWS
additions dropped, defaults and empties dropped, environment and secrets
sorted by name); the two are equal exactly when the live revision can be
reused. This is how dagster-aws compares task definitions
(``DagsterEcsTaskDefinitionConfig.matches_other_task_definition_config``), and
its warning applies: a comparison that is off by one field registers a new
revision on every deploy, so the tests check both directions.

Publishes ``task_definition`` (the serving revision, or an Output of the new one)
and ``new_revision``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.common import (
    CONTAINER_NAME,
    AwsContext,
    RepoInputs,
    canonical_json,
    execution_role_arn,
    repo_tags,
    revision_of,
    tag_list,
)
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Output, Scope
from meta_deployer.platforms.aws.instance import pg_secrets
from meta_deployer.platforms.aws.settings import EcsSettings
from meta_deployer.spec import RepoSpec

#: Container health check timing (the command comes from the code server: its gRPC health service).
HEALTH_CHECK_TIMING: dict[str, Any] = {"interval": 30, "timeout": 10, "retries": 3, "startPeriod": 60}
#: Awslogs stream prefix: streams are ``dagster/dagster/<task id>``.
LOG_STREAM_PREFIX = "dagster"
#: Fields DescribeTaskDefinition adds to what was registered (and ``tagsDict``, added by the gateway).
AWS_ADDED_FIELDS = frozenset(
    {
        "taskDefinitionArn", "revision", "status", "compatibilities", "requiresAttributes", "registeredAt",
        "registeredBy", "deregisteredAt", "deleteRequestedAt", "tagsDict", "tags",
    }
)
#: Fields whose AWS default we never set, dropped when they hold that default (AWS fills them in:
#: ``cpu: 0`` on containers, and newer API versions report ``enableFaultInjection`` and
#: ``versionConsistency``; see the RegisterTaskDefinition reference).
TASK_DEFAULTS: dict[str, Any] = {"enableFaultInjection": False}
CONTAINER_DEFAULTS: dict[str, Any] = {"cpu": 0, "versionConsistency": "enabled"}
#: Lists of ``{"name": ...}`` items whose order AWS does not keep.
NAMED_LISTS = frozenset({"environment", "secrets"})


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or value == ""


def _clean(value: Any, key: str = "") -> Any:
    """Empties dropped everywhere; named lists sorted by name."""
    if isinstance(value, Mapping):
        cleaned = {k: _clean(v, k) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if not _empty(v)}
    if isinstance(value, (list, tuple)):
        items = [_clean(v) for v in value]
        if key in NAMED_LISTS:
            items = sorted(items, key=lambda i: i.get("name", "") if isinstance(i, dict) else "")
        return items
    return value


def _container(container: Mapping[str, Any]) -> dict[str, Any]:
    c = {k: v for k, v in container.items() if CONTAINER_DEFAULTS.get(k, object()) != v}
    # awsvpc: hostPort is the containerPort or absent, and AWS fills it in.
    c["portMappings"] = [
        {k: v for k, v in m.items() if not (k == "hostPort" and v in (0, m.get("containerPort")))}
        for m in container.get("portMappings") or []
    ]
    return c


def normalise(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The comparable shape of a task definition, from a request or from DescribeTaskDefinition."""
    body = {k: v for k, v in definition.items() if k not in AWS_ADDED_FIELDS and TASK_DEFAULTS.get(k, object()) != v}
    body["containerDefinitions"] = sorted(
        (_container(c) for c in definition.get("containerDefinitions") or []), key=lambda c: c.get("name", "")
    )
    return _clean(body)


def _differences(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        for key in sorted(set(a) | set(b)):
            diffs += _differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return diffs
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and not path.endswith(tuple(NAMED_LISTS)):
        diffs = []
        for i, (x, y) in enumerate(zip(a, b)):
            diffs += _differences(x, y, f"{path}[{i}]")
        return diffs
    return [] if a == b else [path or "."]


@dataclass(frozen=True)
class TaskDefinition:
    """The ``RegisterTaskDefinition`` request (without tags), and the tags the revision gets."""

    request: Mapping[str, Any]
    tags: Mapping[str, str]

    @property
    def family(self) -> str:
        """The task definition family."""
        return self.request["family"]

    def differences(self, live: Mapping[str, Any] | None) -> list[str]:
        """Paths where ``live`` differs from this definition, in either direction (empty: reuse it)."""
        if live is None:
            return ["no active revision"]
        return _differences(normalise(self.request), normalise(live), "")

    def matches(self, live: Mapping[str, Any] | None) -> bool:
        """True when the live revision can be reused as it is."""
        return not self.differences(live)


def container_secrets(spec: RepoSpec, settings: EcsSettings) -> list[dict[str, str]]:
    """The container's ``secrets``, sorted by name: the spec's, and with ``META_DEPLOYER_PG_SECRET_ARN`` the
    instance's Postgres fields (``DAGSTER_PG_*``, which a spec may not name), so that the runs launched
    from this family can open the instance. Only ARNs: ECS resolves them when a task starts."""
    secrets = [{"name": s.name, "valueFrom": s.value_from} for s in spec.secrets]
    if settings.pg_secret_arn:
        secrets += pg_secrets(settings.pg_secret_arn)
    return sorted(secrets, key=lambda s: s["name"])


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
            "execution_role_arn": execution_role_arn(spec.name, ctx),
            "env_vars": [f"{k}={v}" for k, v in sorted(env.items())],
            "secrets": container_secrets(spec, settings),
            "run_resources": {"cpu": str(spec.resources.cpu), "memory": str(spec.resources.memory)},
            "run_ecs_tags": [{"key": naming.REPO_TAG_KEY, "value": spec.name}],
        }
    }


def task_definition(inputs: RepoInputs) -> dict[str, Any]:
    """The ``RegisterTaskDefinition`` request (without tags) for the repo's code server."""
    spec, image, settings, ctx, server = inputs.spec, inputs.image, inputs.settings, inputs.ctx, inputs.server
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
        "secrets": container_secrets(spec, settings),
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": naming.log_group(spec.name),
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
        "executionRoleArn": execution_role_arn(spec.name, ctx),
        "containerDefinitions": [container],
    }


def want(inputs: RepoInputs) -> TaskDefinition:
    return TaskDefinition(task_definition(inputs), repo_tags(inputs.name))


def read(gw: Any, scope: Scope) -> dict[str, Any] | None:
    return None if scope.removal else gw.latest_task_definition(naming.task_family(scope.name))


def converge(want: TaskDefinition, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    reasons = want.differences(have)
    if not reasons:
        assert have is not None
        ctx.values["task_definition"] = revision_of(have["taskDefinitionArn"])
        ctx.values["new_revision"] = False
        return []
    ctx.values["task_definition"] = Output("task_definition.register", "taskDefinition.taskDefinitionArn")
    ctx.values["new_revision"] = True
    why = "; ".join(reasons[:5]) + ("; ..." if len(reasons) > 5 else "")
    return [Call(
        "task_definition.register", "ecs", "RegisterTaskDefinition",
        {**want.request, "tags": tag_list(want.tags, "key", "value")},
        f"register task definition {want.family} ({why})", f"task definition {want.family}",
    )]


KIND = Kind("task_definition", want, read, converge)
