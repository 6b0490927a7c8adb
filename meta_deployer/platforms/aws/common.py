"""What every resource kind of a repo shares (pure): constants, names, tags and the repo's inputs.

Also the two reads of a described ECS service that both the planner and the
executor need (:func:`service_is_stable`, :func:`rollout_failed`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meta_deployer import naming
from meta_deployer.errors import MetaDeployerError
from meta_deployer.model import CodeServer
from meta_deployer.platforms.aws.settings import EcsSettings
from meta_deployer.spec import RepoSpec

#: Port every code server listens on inside its task (the runtime contract's CONTAINER_PORT;
#: this planner imports no runtime code, and a test checks that the two agree).
GRPC_PORT = 4000
#: Name of the container in every task definition (also given to EcsRunLauncher).
CONTAINER_NAME = "dagster"
ECS_TASKS_PRINCIPAL = "ecs-tasks.amazonaws.com"
POLICY_VERSION = "2012-10-17"
#: Name of the task role's one inline policy.
TASK_POLICY_NAME = "repo-storage"
SHARED_PREFIX = "repos/shared/"
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

#: ECS tag rule (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Tag.html): "letters,
#: numbers, and spaces representable in UTF-8, and the following characters: + - = . _ : / @";
#: keys 1-128 characters, values 0-256; the ``aws:`` prefix (any case) is reserved for AWS.
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
_TAG_PUNCTUATION = " +-=._:/@"


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


@dataclass(frozen=True)
class RepoInputs:
    """Everything a repo's kinds derive their desired values from."""

    spec: RepoSpec
    image: str  # by digest
    commit: str
    branch: str
    settings: EcsSettings
    ctx: AwsContext
    server: CodeServer

    @property
    def name(self) -> str:
        """The repo's name."""
        return self.spec.name


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no spaces: the form we send and compare."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _tag_chars(text: str) -> str:
    return "".join(c if c.isalnum() or c in _TAG_PUNCTUATION else "_" for c in text)


def tag_value(value: str) -> str:
    """``value`` made valid for an AWS tag: a forbidden character becomes ``_``; at most 256 characters."""
    return _tag_chars(value)[:TAG_VALUE_MAX]


def tag_key(key: str) -> str:
    """``key`` made valid for an AWS tag: forbidden characters become ``_``, no ``aws:`` prefix, 1-128 characters."""
    cleaned = _tag_chars(key)
    if cleaned.lower().startswith("aws:"):
        cleaned = "x-" + cleaned
    return (cleaned or "_")[:TAG_KEY_MAX]


def tags(values: Mapping[str, str]) -> dict[str, str]:
    """Tags with every key and value made valid (see :func:`tag_key`, :func:`tag_value`)."""
    return {tag_key(k): tag_value(v) for k, v in values.items()}


def tag_list(values: Mapping[str, str], key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    """Tags as the ``[{"Key": k, "Value": v}]`` list most APIs take (ECS: ``key``/``value``)."""
    return [{key: k, value: v} for k, v in sorted(values.items())]


def repo_tags(name: str) -> dict[str, str]:
    """Tags on every resource the deployer creates for ``name``."""
    return tags({naming.REPO_TAG_KEY: name})


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
    """Trust policy of every task role (and the execution role): only ECS tasks may assume it."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": ECS_TASKS_PRINCIPAL}, "Action": "sts:AssumeRole"}
        ],
    }


def execution_role_arn(name: str, ctx: AwsContext) -> str:
    """The repo's own task execution role (``resources/execution_role.py``); never a shared one,
    which would let one repo's task definition inject another repo's secrets."""
    return ctx.role_arn(naming.execution_role(name))


def revision_of(arn_or_family_rev: str) -> str:
    """``family:revision`` from an ARN or a ``family:revision`` string."""
    return arn_or_family_rev.rsplit("/", 1)[-1]


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


#: ``stoppedReason`` prefixes of a task whose containers never ran (the image could not be pulled, the
#: secrets or the log stream could not be set up...), from "Amazon ECS stopped task error codes":
#: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stopped-task-error-codes.html and
#: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cannot-start-container.html
START_FAILURES = (
    "CannotPullContainerError", "CannotCreateContainerError", "CannotStartContainerError",
    "CannotInspectContainerError", "ResourceInitializationError", "TaskFailedToStart",
)
#: The task's ``stopCode`` when it never started (API_Task: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html).
STOP_CODE_FAILED_TO_START = "TaskFailedToStart"


@dataclass(frozen=True)
class TaskOutcome:
    """How a stopped one-off task ended: its container's exit code, or why it never ran."""

    exit_code: int | None
    started: bool
    reason: str

    @property
    def succeeded(self) -> bool:
        """True only when the container ran and exited 0."""
        return self.started and self.exit_code == 0


def task_outcome(task: Mapping[str, Any], container: str) -> TaskOutcome:
    """Read a STOPPED task from DescribeTasks: did ``container`` run, and with which exit code.

    AWS rules relied on (API_Task and API_Container,
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Container.html): a container that
    ran has ``exitCode``; one that never started has none, and the task then carries
    ``stopCode: TaskFailedToStart`` and a ``stoppedReason`` such as ``CannotPullContainerError: ...``.
    Any of the three means "could not start" (an emulator may report one without the others).
    """
    found = next((c for c in task.get("containers") or [] if c.get("name") == container), {})
    why = "; ".join(
        part for part in (task.get("stoppedReason") or "", found.get("reason") or "") if part
    ) or "no reason given"
    code = found.get("exitCode")
    not_started = (
        task.get("stopCode") == STOP_CODE_FAILED_TO_START
        or (task.get("stoppedReason") or "").startswith(START_FAILURES)
        or code is None
    )
    return TaskOutcome(exit_code=None if not_started else int(code), started=not not_started, reason=why)
