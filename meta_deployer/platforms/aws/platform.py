"""``make platform`` / ``make platform-down``: the Dagster platform itself on ECS (idempotent).

``make platform`` keeps, through the same engine and executor as a repo deploy (the kinds are in
``resources/platform/``): the security groups, the workspace EFS (file system, access point,
mount targets), the platform's roles, its log groups, the deployer's Cloud Map name, the
webserver's target group and authenticated listener rule (with ``META_DEPLOYER_LB_LISTENER_ARN``),
the three task definitions and the three services ``dagster-webserver``, ``dagster-daemon`` and
``meta-deployer``. It needs ``make bootstrap`` first (the cluster, the namespace, the bucket).

A dry run prints the plan and changes nothing; a second run plans nothing. ``platform_down``
removes the services, their task definitions, the rule and target group and the Cloud Map name,
and keeps the EFS, the bucket, the log groups and the roles; with ``purge`` the EFS, the log groups
and the roles go too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meta_deployer.platforms.aws import engine
from meta_deployer.platforms.aws.apply import apply, observe
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.aws.resources.platform import PLATFORM_KINDS, PlatformInputs
from meta_deployer.settings import Settings

SCOPE_NAME = "platform"


@dataclass(frozen=True)
class PlatformResult:
    """The plan, and whether it was applied."""

    plan: engine.Plan
    applied: bool

    @property
    def steps(self) -> tuple[engine.Step, ...]:
        """The planned steps."""
        return self.plan.steps

    def render(self) -> str:
        """The plan as text (what a dry run prints)."""
        text = self.plan.render()
        return text if self.applied or not self.steps else f"{text}\n(dry run, nothing changed)"


def _gateway(settings: Settings, gateway: AwsGateway | None) -> AwsGateway:
    return gateway or AwsGateway(retry_mode=settings.ecs.retry_mode, max_attempts=settings.ecs.max_attempts)


def inputs_for(settings: Settings, gw: AwsGateway) -> PlatformInputs:
    """The platform's inputs: the settings and the account the gateway reaches."""
    account, partition = gw.identity()
    images = settings.images
    project = images.codebuild_project if images.builder == "codebuild" else None
    return PlatformInputs(settings.ecs, settings.platform_aws, gw.region, account, partition, project)


def platform_plan(settings: Settings, gw: AwsGateway) -> engine.Plan:
    """What ``make platform`` would do now (reads only)."""
    settings.ecs.require_network()
    scope = engine.Scope(SCOPE_NAME, settings.ecs, images=settings.images)
    desired = engine.wants(PLATFORM_KINDS, inputs_for(settings, gw))
    return engine.plan(PLATFORM_KINDS, desired, observe(PLATFORM_KINDS, gw, scope), scope)


def platform_up(
    settings: Settings, dry_run: bool = False, log: Callable[[str], None] = print, *, gateway: AwsGateway | None = None
) -> PlatformResult:
    """Create or converge the platform; with ``dry_run`` only print the plan."""
    gw = _gateway(settings, gateway)
    result = PlatformResult(platform_plan(settings, gw), applied=not dry_run)
    log(result.render())
    if not dry_run and result.steps:
        apply(result.plan, gw, log, settings.ecs.poll_interval_s)
    return result


def platform_down(
    settings: Settings, purge: bool = False, dry_run: bool = False, log: Callable[[str], None] = print,
    *, gateway: AwsGateway | None = None,
) -> PlatformResult:
    """Remove the services (and their task definitions, rule, target group, Cloud Map name); with
    ``purge`` also the EFS, the log groups and the roles."""
    gw = _gateway(settings, gateway)
    scope = engine.Scope(SCOPE_NAME, settings.ecs, removal=True, purge=purge, images=settings.images)
    plan = engine.plan_removal(PLATFORM_KINDS, observe(PLATFORM_KINDS, gw, scope), scope)
    result = PlatformResult(plan, applied=not dry_run)
    log(result.render())
    if not dry_run and plan.steps:
        apply(plan, gw, log, settings.ecs.poll_interval_s)
    return result
