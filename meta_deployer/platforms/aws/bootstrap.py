"""``make bootstrap``: the shared AWS pieces every repo's deploy relies on (idempotent).

It creates, only when missing:

- the bucket (``META_DEPLOYER_BUCKET``) with its layout: ``repos/``,
  ``repos/shared/``, ``system/`` and ``temp/`` (folder markers), and a
  lifecycle rule that expires ``temp/`` after ``META_DEPLOYER_TEMP_EXPIRY_DAYS``;
- the ECS cluster (``META_DEPLOYER_ECS_CLUSTER``);
- the Cloud Map private DNS namespace (``META_DEPLOYER_NAMESPACE``) in
  ``META_DEPLOYER_VPC_ID``;
- the shared task execution role (pulls ``dagster/*`` images, writes
  ``/dagster/repos/*`` logs, reads **no** secrets), unless
  ``META_DEPLOYER_EXECUTION_ROLE_ARN`` names one. Repo tasks do not use it:
  each repo gets its own execution role on deploy
  (``resources/execution_role.py``). An older bootstrap's policy that read
  every ``dagster/*`` secret is deleted;
- with ``META_DEPLOYER_BUILDER=codebuild``: the CodeBuild project
  (``META_DEPLOYER_CODEBUILD_PROJECT``), its service role (reads ``system/builds/``, pushes
  ``dagster/*`` images, writes its own log group) and its log group (``resources/codebuild.py``).

Like a repo deploy, it is a plan on the same engine (the kinds are in
``resources/shared.py``) and an apply by the same executor; a dry run prints
the plan and changes nothing, and a second run plans nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from meta_deployer.platforms.aws import engine
from meta_deployer.platforms.aws.apply import apply, observe
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.aws.resources.shared import (  # noqa: F401 - re-exported
    BOOTSTRAP_TAGS,
    BUCKET_LAYOUT,
    EXECUTION_POLICY,
    SHARED_KINDS,
    TEMP_RULE_ID,
    SharedInputs,
    execution_policy,
    temp_lifecycle_rule,
)
from meta_deployer.platforms.aws.settings import EcsSettings
from meta_deployer.settings import Settings


@dataclass(frozen=True)
class BootstrapResult:
    """The plan, and whether it was applied."""

    steps: tuple[engine.Step, ...]
    applied: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    def render(self) -> str:
        """The plan as text (what a dry run prints)."""
        head = "bootstrap: nothing to do" if not self.steps else f"bootstrap: {len(self.steps)} step(s)" + (
            "" if self.applied else " (dry run, nothing changed)"
        )
        return "\n".join([head, *(f"  {i}. {s.describe()}" for i, s in enumerate(self.steps, 1)), *self.notes])


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
    scope = engine.Scope("bootstrap", ecs, images=settings.images)
    desired = engine.wants(SHARED_KINDS, SharedInputs(ecs, gw.region, account, partition, settings.images))
    the_plan = engine.plan(SHARED_KINDS, desired, observe(SHARED_KINDS, gw, scope), scope)
    notes = (f"execution role: using META_DEPLOYER_EXECUTION_ROLE_ARN={ecs.execution_role_arn} as is",) if ecs.execution_role_arn else ()
    result = BootstrapResult(the_plan.steps, applied=not dry_run, notes=notes)
    log(result.render())
    if not dry_run:
        apply(the_plan, gw, log, ecs.poll_interval_s)
    return result
