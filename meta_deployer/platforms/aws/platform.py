"""``make platform`` / ``make platform-down``: the Dagster platform itself on ECS (idempotent).

``make platform`` first has the platform image (``platforms/platform_image.py``: this project and the
rendered ``dagster.yaml``, built and pushed by ``META_DEPLOYER_BUILDER`` only when its content tag is
missing; or ``META_DEPLOYER_PLATFORM_IMAGE``, by digest) and pins it by digest. It then keeps,
through the same engine and executor as a repo deploy (the kinds are in ``resources/platform/``):
the security groups, the workspace EFS (file system, access point,
mount targets), the platform's roles, its log groups, the deployer's Cloud Map name, the
webserver's target group and authenticated listener rule (with ``META_DEPLOYER_LB_LISTENER_ARN``),
the three task definitions and the three services ``dagster-webserver``, ``dagster-daemon`` and
``meta-deployer``. It needs ``make bootstrap`` first (the cluster, the namespace, the bucket).

``META_DEPLOYER_PG_SECRET_ARN`` is required (by the dry run too: every task definition and the
execution role name it). A dry run builds nothing and changes nothing (it pins the image's digest
when the registry has its tag); a second run builds nothing and plans nothing. ``platform_down``
removes the services, their task definitions, the rule and target group and the Cloud Map name,
and keeps the EFS, the bucket, the log groups and the roles; with ``purge`` the EFS, the log groups
and the roles go too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meta_deployer.errors import SettingsError
from meta_deployer.platforms import platform_image
from meta_deployer.platforms.aws import engine
from meta_deployer.platforms.aws.apply import apply, observe
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.aws.instance import instance_yaml
from meta_deployer.platforms.aws.resources.platform import PLATFORM_KINDS, PlatformInputs
from meta_deployer.platforms.aws.resources.platform.common import PG_SECRET_REQUIRED
from meta_deployer.platforms.images import Builder, get_builder
from meta_deployer.settings import Settings

SCOPE_NAME = "platform"
#: Core settings the platform's deployer gets as they are set here (the rest names this machine, or
#: is fixed by the platform: its workspace, state, endpoints and replicas).
PASSED_SETTINGS = frozenset({
    "META_DEPLOYER_CONFIG_GIT_URL", "META_DEPLOYER_CONFIG_GIT_BRANCH", "META_DEPLOYER_RELOAD_TIMEOUT",
    "META_DEPLOYER_LEASE_TTL", "META_DEPLOYER_LEASE_TIMEOUT", "META_DEPLOYER_GIT_TOKEN_HOSTS",
})


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


def deployer_settings(settings: Settings) -> dict[str, str]:
    """The settings ``make platform`` runs with that the platform's deployer needs too, as environment
    variables: the images group and the configuration repository, as set. Never this machine's paths
    and files (a git token or SSH key file stays here: see README), its endpoints, nor a secret value."""
    images = settings.images
    env = {k: v for k, v in images.as_env().items() if k not in ("META_DEPLOYER_PLATFORM", "META_DEPLOYER_BUCKET")}
    # The builder and the base image always (a default could change under a deployer of another release).
    env.update(META_DEPLOYER_BUILDER=images.builder, META_DEPLOYER_BASE_IMAGE=images.base_image)
    if images.builder == "codebuild":
        env["META_DEPLOYER_CODEBUILD_PROJECT"] = images.codebuild_project
    env.update({k: v for k, v in settings.as_env().items() if k in PASSED_SETTINGS})
    return env


def inputs_for(settings: Settings, gw: AwsGateway, image_ref: str | None = None) -> PlatformInputs:
    """The platform's inputs: the settings, the account the gateway reaches and the platform image."""
    account, partition = gw.identity()
    images = settings.images
    project = images.codebuild_project if images.builder == "codebuild" else None
    return PlatformInputs(settings.ecs, settings.platform_aws, gw.region, account, partition, project,
                          image_ref=image_ref, deployer_settings=deployer_settings(settings))


def require(settings: Settings) -> None:
    """What ``make platform`` (and its dry run) cannot do without: the network and the Postgres secret."""
    settings.ecs.require_network()
    if not settings.ecs.pg_secret_arn:
        raise SettingsError(PG_SECRET_REQUIRED)


def platform_plan(settings: Settings, gw: AwsGateway, image_ref: str | None = None) -> engine.Plan:
    """What ``make platform`` would do now with the platform image ``image_ref`` (reads only)."""
    require(settings)
    scope = engine.Scope(SCOPE_NAME, settings.ecs, images=settings.images)
    desired = engine.wants(PLATFORM_KINDS, inputs_for(settings, gw, image_ref))
    return engine.plan(PLATFORM_KINDS, desired, observe(PLATFORM_KINDS, gw, scope), scope)


def platform_image_ref(
    settings: Settings, dry_run: bool, log: Callable[[str], None], builder: Builder | None = None,
    root: Path = platform_image.PROJECT_ROOT,
) -> str:
    """The platform image by digest: ``META_DEPLOYER_PLATFORM_IMAGE`` as is, else the image of this
    project and the rendered instance, built and pushed by the builder only when its content tag is
    missing. A dry run builds nothing: it looks the tag up, and names it by tag when it is missing."""
    if settings.platform_aws.image:
        return settings.platform_aws.image
    builder = builder or get_builder(settings.images)
    context = platform_image.platform_context(settings.images.base_image, instance_yaml(settings.ecs), root=root)
    if dry_run:
        registry = builder.registry()
        ref = f"{registry}/{platform_image.PLATFORM_REPOSITORY}:{context.tag}"
        found = builder.find(ref, log) if registry else None
        if found and found.get("digest"):
            return f"{registry}/{platform_image.PLATFORM_REPOSITORY}@{found['digest']}"
        log(f"the platform image {ref} is not built yet: make platform builds and pushes it, then pins it by digest")
        return f"{ref} (to build)"
    image = platform_image.ensure_platform_image(builder, context, log)
    log(f"platform image: {image.pinned}" + (" (built now)" if image.built else ""))
    return image.pinned


def platform_up(
    settings: Settings, dry_run: bool = False, log: Callable[[str], None] = print, *, gateway: AwsGateway | None = None,
    builder: Builder | None = None, root: Path = platform_image.PROJECT_ROOT,
) -> PlatformResult:
    """Create or converge the platform; with ``dry_run`` only print the plan (and build nothing).

    ``builder`` (default: ``META_DEPLOYER_BUILDER``'s) and ``root`` (the project whose files the
    image holds) are for tests."""
    require(settings)
    gw = _gateway(settings, gateway)
    image_ref = platform_image_ref(settings, dry_run, log, builder, root)
    result = PlatformResult(platform_plan(settings, gw, image_ref), applied=not dry_run)
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
