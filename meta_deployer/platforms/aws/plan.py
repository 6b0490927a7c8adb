"""A repo's desired AWS resources, and the plans that converge or remove them (pure, no boto3).

:func:`desired_repo` asks every kind of :data:`~meta_deployer.platforms.aws.resources.REPO_KINDS`
what it wants for a spec, a published image (by digest), a commit and the
:class:`EcsSettings`; :func:`plan` compares that with what the executor read
(``apply.observe``: one observation per kind) and returns a
:class:`~meta_deployer.platforms.aws.engine.Plan` of generic calls, in order.
``apply.apply`` runs it; a dry run prints ``Plan.render()``. Planning again
after a successful apply gives an empty plan. See ``engine.py`` for the
pipeline and ``resources/`` for each kind.

The names below are this package's public surface (the ecs platform and the
tests use them); they live in ``common.py`` and the kinds' modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meta_deployer.model import CodeServer
from meta_deployer.platforms.aws import engine
from meta_deployer.platforms.aws.common import (  # noqa: F401 - re-exported
    CONTAINER_NAME,
    ECS_TASKS_PRINCIPAL,
    GRPC_PORT,
    PENDING_DIGEST,
    POLICY_VERSION,
    RECORD_TAGS,
    SHARED_PREFIX,
    TAG_BRANCH,
    TAG_COMMIT,
    TAG_ENDPOINT,
    TAG_IMAGE,
    TAG_SETTINGS,
    TAG_SPEC_HASH,
    TASK_POLICY_NAME,
    AwsContext,
    PlanError,
    RepoInputs,
    canonical_json,
    cloud_map_host,
    endpoint,
    execution_role_arn,
    image_by_digest,
    repo_tags,
    revision_of,
    rollout_failed,
    service_is_stable,
    tag_key,
    tag_value,
    trust_policy,
    workspace_entry,
)
from meta_deployer.platforms.aws.engine import Call, DeletePrefix, Output, Plan, Scope, WaitStable  # noqa: F401
from meta_deployer.platforms.aws.resources import REPO_KINDS
from meta_deployer.platforms.aws.resources.discovery import DNS_TTL_S  # noqa: F401
from meta_deployer.platforms.aws.resources.load_balancer import allocate_priority  # noqa: F401
from meta_deployer.platforms.aws.resources.service import DEPLOYMENT_CONFIGURATION  # noqa: F401
from meta_deployer.platforms.aws.resources.task_definition import (  # noqa: F401
    TaskDefinition,
    container_context,
    normalise,
)
from meta_deployer.platforms.aws.resources.task_role import task_role_policy  # noqa: F401
from meta_deployer.platforms.aws.settings import EcsSettings
from meta_deployer.spec import RepoSpec


@dataclass(frozen=True)
class DesiredRepo:
    """Everything the ecs platform keeps in AWS for one repo: each kind's desired value by kind name."""

    inputs: RepoInputs
    wants: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The repo's name."""
        return self.inputs.name

    @property
    def settings(self) -> EcsSettings:
        """The settings the values were derived from."""
        return self.inputs.settings

    def want(self, kind: str) -> Any:
        """The desired value of one kind."""
        return self.wants[kind]

    @property
    def role(self) -> Any:
        """The task role (``resources.task_role.Role``)."""
        return self.wants["task_role"]

    @property
    def log_group(self) -> Any:
        """The log group (``resources.log_group.LogGroup``)."""
        return self.wants["log_group"]

    @property
    def service(self) -> Any:
        """The ECS service (``resources.service.Service``)."""
        return self.wants["service"]

    @property
    def record(self) -> dict[str, str]:
        """The deployment record tags."""
        return self.wants["record"]

    @property
    def task_definition(self) -> dict[str, Any]:
        """The ``RegisterTaskDefinition`` request (without tags)."""
        return dict(self.wants["task_definition"].request)

    @property
    def family(self) -> str:
        """The task definition family."""
        return self.wants["task_definition"].family


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
    inputs = RepoInputs(spec, image_by_digest(image_ref, digest), commit, branch, settings, ctx, server)
    return DesiredRepo(inputs, engine.wants(REPO_KINDS, inputs))


def scope(name: str, settings: EcsSettings, *, removal: bool = False, purge: bool = False) -> Scope:
    """What the kinds read and plan for: a deploy, a removal or a purge of ``name``."""
    return Scope(name, settings, removal=removal, purge=purge)


def plan(desired: DesiredRepo, observed: Mapping[str, Any]) -> Plan:
    """Calls that converge ``observed`` (one observation per kind) to ``desired``, in order (pure)."""
    return engine.plan(REPO_KINDS, desired.wants, observed, scope(desired.name, desired.settings))


def plan_removal(name: str, observed: Mapping[str, Any], settings: EcsSettings, purge: bool) -> Plan:
    """Calls that remove what serves ``name``; with ``purge`` also its logs, images and data (pure)."""
    return engine.plan_removal(REPO_KINDS, observed, scope(name, settings, removal=True, purge=purge))


def task_definition_differences(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> list[str]:
    """Why the live task definition is not the desired request (empty: reuse it)."""
    return TaskDefinition(desired, {}).differences(live)
