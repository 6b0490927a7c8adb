"""The ``ecs`` platform: each repo runs as its own ECS Fargate service, isolated by its own IAM role.

The stages (see ``meta_deployer.platforms.base`` for the contract):

- ``build`` and ``publish`` delegate to ``meta_deployer.platforms.images``: the image is
  built once, pushed to ECR (``dagster/<name>``), and referenced **by digest**.
- ``serve`` computes the desired resources (``aws.plan.desired_repo``), reads
  the live ones (``aws.apply.observe``, one read per resource kind), plans the
  difference (``aws.plan.plan``: generic AWS calls) and applies it: log group, task role and
  execution role (each with one inline policy), Cloud Map service, optional
  target group and listener rule, a task definition revision only when the
  rendered definition differs, a one-off validation task of the revision the
  service is about to run (``resources/validation.py``: RunTask with the
  contract's validate command; a failure stops the plan before the service
  moves), and the ECS service. It then waits until the
  rollout is stable and records the deployment as tags on the service. An
  unchanged deploy makes no mutating AWS call.
- ``stop`` removes what serves a repo; its logs, images and data stay unless
  ``purge``.
- ``observe`` reads every repo back from the tags on the cluster's services,
  so that a restarted deployer adopts what exists.
- ``plan_for`` and ``plan_removal`` are the dry runs: the same plans,
  printed and not applied.

Every name comes from ``meta_deployer.naming``; every AWS call goes through
``meta_deployer.platforms.aws.gateway.AwsGateway``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from meta_deployer import naming
from meta_deployer.model import Artifact, Checkout, CodeServer, Log, Observed, Published, Served
from meta_deployer.platforms import location
from meta_deployer.platforms.aws import plan as aws_plan
from meta_deployer.platforms.aws.apply import apply, observe, status_line
from meta_deployer.platforms.aws.resources import REPO_KINDS
from meta_deployer.platforms.aws.resources.execution_role import secrets_prefix
from meta_deployer.spec import SHARED_SECRETS_PREFIX, secret_arn_problem
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.aws.settings import EcsSettings
from meta_deployer.settings import Settings
from meta_deployer.spec import RepoSpec

PLATFORM_NAME = "ecs"
#: Bumped when the rendered resources change shape, so every repo redeploys once.
#: 2: the code server starts with --fixed-server-id.
RENDER_VERSION = "2"
#: Follow mode: how often ``logs(follow=True)`` polls CloudWatch.
LOG_FOLLOW_POLL_S = 2.0

__all__ = ["EcsPlatform", "EcsSettings"]


def code_server(
    spec: RepoSpec, bucket: str, server_id: str | None = None, code: tuple[str, str] | None = None
) -> CodeServer:
    """A task's code server: the location entry point with the repo's environment (S3 storage),
    reporting ``server_id`` (``--fixed-server-id``, see ``location.server_id``) from every task.

    ``code``: (``s3://<bucket>/repos/<name>/code/<commit>.tar.gz``, its sha256) when the code is mounted:
    the entry point fetches the archive with the task role (which reads ``repos/<name>/`` only), checks
    its sha256 and serves it (``meta_deployer_runtime.code``); so do the validation task and the runs."""
    storage = location.storage_env(spec, bucket=bucket)
    extra = location.code_source_env(spec, spec.working_directory or ".")
    if code is not None:
        extra.update(location.mounted_code_env(spec, *code))
    return CodeServer(
        command=tuple(location.entrypoint_command(port=location.CONTAINER_PORT, server_id=server_id)),
        environment=location.location_env(spec, storage, extra),
        port=location.CONTAINER_PORT,
        health_command=tuple(location.health_command(location.CONTAINER_PORT)),
        validate_command=tuple(location.validate_command()),
    )


def _mounted_code(published: Published) -> tuple[str, str] | None:
    """(archive URI, sha256) of the code ``published`` serves when it is mounted, else None."""
    meta = published.metadata or {}
    if meta.get("code_archive") and meta.get("code_sha256"):
        return meta["code_archive"], meta["code_sha256"]
    return None


class EcsPlatform:
    """Deploys code locations as ECS services; see the module docstring."""

    name = PLATFORM_NAME

    def __init__(self, settings: Settings, *, gateway: AwsGateway | None = None, ecs_settings: EcsSettings | None = None):
        self.settings = settings
        self.ecs = ecs_settings or settings.ecs
        self._gateway = gateway

    @cached_property
    def gateway(self) -> AwsGateway:
        """The AWS gateway, created on first use (never at import time)."""
        return self._gateway or AwsGateway(retry_mode=self.ecs.retry_mode, max_attempts=self.ecs.max_attempts)

    @cached_property
    def context(self) -> aws_plan.AwsContext:
        """Account, region and partition of the caller (one STS call, cached)."""
        account, partition = self.gateway.identity()
        return aws_plan.AwsContext(account_id=account, region=self.gateway.region, partition=partition)

    @property
    def registry(self) -> str:
        """``META_DEPLOYER_REGISTRY``, or the account's ECR registry."""
        if self.ecs.registry:
            return self.ecs.registry
        ctx = self.context
        suffix = ".com.cn" if ctx.partition == "aws-cn" else ".com"
        return f"{ctx.account_id}.dkr.ecr.{ctx.region}.amazonaws{suffix}"

    # -- the Platform interface ----------------------------------------------
    def settings_fingerprint(self, spec: RepoSpec) -> str:
        """Hash of every ECS setting that changes what is deployed for ``spec``."""
        raw = f"{RENDER_VERSION}:{self.ecs.deploy_fingerprint()}:{spec.name}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def build(self, spec: RepoSpec, checkout: Checkout, log: Log, *, run_id: str | None = None) -> Artifact:
        """Build (or reuse) the repo's image; see ``meta_deployer.platforms.images``. With mounted code
        (templated repos on a builder with base images) a dependency image, and the commit's code archive
        written once to ``s3://<bucket>/repos/<name>/code/<commit>.tar.gz``; its definitions are loaded
        from it by the validation task, where the service will run (``resources/validation.py``)."""
        from meta_deployer import codearchive
        from meta_deployer.platforms import images  # imported on use: it needs the docker SDK

        artifact = images.build_image(spec, checkout, self.settings.images, log, run_id=run_id, mount=True)
        if not artifact.metadata.get("mounted"):
            return artifact
        archive = codearchive.publish_code(self.settings, checkout, log)
        return replace(artifact, metadata={**artifact.metadata, **archive.metadata(), "code_written": archive.written})

    def publish(self, spec: RepoSpec, artifact: Artifact, log: Log) -> Published:
        """Push the image to ECR (or ``META_DEPLOYER_REGISTRY``) and return it by digest (with the code
        archive it serves, when the code is mounted)."""
        from meta_deployer.platforms import images

        published = images.push_image(spec, artifact, self.registry, log)
        code = {k: artifact.metadata[k] for k in ("code_archive", "code_sha256") if k in artifact.metadata}
        return replace(published, metadata={**published.metadata, **code}) if code else published

    def desired(self, spec: RepoSpec, published: Published, checkout: Checkout) -> aws_plan.DesiredRepo:
        """The desired AWS resources for ``spec`` at ``checkout`` running ``published``."""
        self.ecs.require_network()
        image = aws_plan.image_by_digest(published.ref, published.digest)
        server_id = location.server_id(spec, checkout.commit, image, self.settings_fingerprint(spec))
        return aws_plan.desired_repo(
            spec, published.ref, published.digest, checkout.commit, checkout.branch, self.ecs, self.context,
            code_server(spec, self.ecs.bucket, server_id, _mounted_code(published)),
        )

    def _observe(self, name: str, *, for_removal: bool = False, purge: bool = False) -> dict[str, Any]:
        return observe(REPO_KINDS, self.gateway, aws_plan.scope(name, self.ecs, removal=for_removal, purge=purge))

    def plan_for(self, spec: RepoSpec, published: Published | None, checkout: Checkout) -> aws_plan.Plan:
        """Dry run of add/update: the actions ``serve`` would take (read calls only).

        With ``published=None`` (a dry run builds nothing) the image is the one
        deployed now when the commit is unchanged, else a placeholder digest that
        stands for the image the build would produce.
        """
        if published is None:
            service = self._last_service(spec.name) or {}
            tags = service.get("tagsDict") or {}
            if tags.get(aws_plan.TAG_COMMIT) == checkout.commit and "@" in tags.get(aws_plan.TAG_IMAGE, ""):
                published = Published(ref=tags[aws_plan.TAG_IMAGE], metadata=self._live_code(spec.name))
            else:
                repo = f"{self.registry}/{naming.ecr_repository(spec.name)}"
                published = Published(ref=f"{repo}:{checkout.short_commit}", digest=aws_plan.PENDING_DIGEST)
        return aws_plan.plan(self.desired(spec, published, checkout), self._observe(spec.name))

    def _live_code(self, name: str) -> dict[str, str]:
        """The code archive (and sha256) the live task definition serves, when its code is mounted."""
        from meta_deployer_runtime import contract

        live = self.gateway.latest_task_definition(naming.task_family(name)) or {}
        env = {e["name"]: e["value"] for c in live.get("containerDefinitions") or [] for e in c.get("environment") or []}
        if env.get(contract.ENV_CODE_ARCHIVE) and env.get(contract.ENV_CODE_SHA256):
            return {"code_archive": env[contract.ENV_CODE_ARCHIVE], "code_sha256": env[contract.ENV_CODE_SHA256]}
        return {}

    def serve(self, spec: RepoSpec, published: Published, checkout: Checkout, log: Log) -> Served:
        """Converge the repo's resources and wait until the service is stable on them."""
        desired = self.desired(spec, published, checkout)
        for warning in self.secret_warnings(spec, self.context):
            log(f"warning: {warning}")
        observed = self._observe(spec.name)
        the_plan = aws_plan.plan(desired, observed)
        log(the_plan.render())
        results = apply(the_plan, self.gateway, log, self.ecs.poll_interval_s)
        # Warnings are best-effort housekeeping that failed after the new version was serving (the
        # deployment record tags, old revisions): the deploy still succeeds, so the pipeline records
        # the serving version locally, and the next deploy's plan converges what was left.
        warnings = results.get("warnings") or []
        for warning in warnings:
            log(f"warning: {warning}")
        revision = aws_plan.revision_of(results.get("task_definition") or "")
        # The release the validation task's report named (none when no task ran: the revision was served already).
        validated = {"dagster_version": results["dagster_version"]} if results.get("dagster_version") else {}
        return Served(
            endpoint=aws_plan.endpoint(spec.name, self.ecs.namespace),
            workspace_entry=aws_plan.workspace_entry(spec.name, self.ecs.namespace),
            changed=bool(the_plan.mutating),
            metadata={
                "platform": PLATFORM_NAME,
                "image": desired.record[aws_plan.TAG_IMAGE],
                "task_definition": revision,
                "actions": [a.describe() for a in the_plan.actions],
                "cluster": self.ecs.cluster,
                "service": desired.service.name,
                "log_group": desired.log_group.name,
                "task_role": desired.role.name,
                "execution_role": desired.want("execution_role").name,
                "warnings": warnings,
                **validated,
            },
        )

    def secret_warnings(self, spec: RepoSpec, ctx: aws_plan.AwsContext | None = None) -> list[str]:
        """Secrets the repo's own execution role cannot read, so its tasks would fail to start.

        The role (``resources/execution_role.py``) reads only ``dagster/<name>/`` and
        ``dagster/shared/`` in this account and region. The spec already refuses other
        prefixes; this is the second line for a spec that got past it, and the only check of
        the account and region (given ``ctx``).
        """
        own = secrets_prefix(spec.name)
        warnings = []
        for s in spec.secrets:
            problem = secret_arn_problem(s.value_from, spec.name)
            parts = s.value_from.split(":")
            if problem is None and ctx is not None and (parts[3], parts[4]) != (ctx.region, ctx.account_id):
                problem = f"is in {parts[3]}/{parts[4]}, not in this deployment's {ctx.region}/{ctx.account_id}"
            if problem:
                warnings.append(
                    f"secret {s.name} ({s.value_from}): the repo's execution role reads only {own}* and "
                    f"{SHARED_SECRETS_PREFIX}* (SSM: /{own}*, /{SHARED_SECRETS_PREFIX}*) in its own account and "
                    f"region, so tasks will fail to start: {problem.split(';')[0]}"
                )
        return warnings

    def _last_service(self, name: str) -> dict[str, Any] | None:
        return self.gateway.get_service(self.ecs.cluster, naming.ecs_service(name))

    def after_switch(self, spec: RepoSpec, served: Served, log: Log) -> None:
        """Nothing to retire: the ECS rolling update already replaced the old tasks."""

    def is_serving(self, name: str, record: dict[str, Any]) -> bool:
        """True when the service is stable and its tags record the commit (and image) of ``record``."""
        service = self._last_service(name)
        if service is None or not aws_plan.service_is_stable(service):
            return False
        tags = service.get("tagsDict") or {}
        if record.get("commit") and tags.get(aws_plan.TAG_COMMIT) != record["commit"]:
            return False
        live_image = tags.get(aws_plan.TAG_IMAGE) or ""
        if record.get("digest") and not live_image.endswith("@" + record["digest"]):
            return False
        image = record.get("artifact") or ""
        return not ("@sha256:" in image and live_image != image)

    def plan_removal(self, name: str, purge: bool) -> aws_plan.Plan:
        """Dry run of remove: the actions ``stop`` would take."""
        naming.validate_name(name)
        observed = self._observe(name, for_removal=True, purge=purge)
        return aws_plan.plan_removal(name, observed, self.ecs, purge)

    def dry_run(self, spec: RepoSpec, checkout: Checkout) -> str:
        """The AWS actions a deploy would take (reads only; nothing is built)."""
        return self.plan_for(spec, None, checkout).render()

    def dry_run_removal(self, name: str, purge: bool) -> str:
        """The AWS actions a removal would take (reads only)."""
        return self.plan_removal(name, purge).render()

    def stop(self, name: str, purge: bool, log: Log) -> None:
        """Remove the repo's service, Cloud Map service, target group, role and revisions (and data with ``purge``)."""
        the_plan = self.plan_removal(name, purge)
        log(the_plan.render())
        apply(the_plan, self.gateway, log, self.ecs.poll_interval_s)

    def observe(self) -> dict[str, Observed]:
        """Every repo deployed in the cluster, read back from the tags on its ECS service."""
        names = self.gateway.list_service_names(self.ecs.cluster)
        result: dict[str, Observed] = {}
        for service in self.gateway.describe_services(self.ecs.cluster, names):
            tags = service.get("tagsDict") or {}
            repo = tags.get(naming.REPO_TAG_KEY)
            if not repo or naming.name_problem(repo):
                continue
            deployments = service.get("deployments") or []
            primary = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
            running, desired = service.get("runningCount", 0), service.get("desiredCount", 0)
            status = f"{observed_state(service)} {running}/{desired} ({primary.get('rolloutState') or 'no rollout state'})"
            image = tags.get(aws_plan.TAG_IMAGE)
            result[repo] = Observed(
                name=repo,
                status=status,
                endpoint=tags.get(aws_plan.TAG_ENDPOINT) or aws_plan.endpoint(repo, self.ecs.namespace),
                commit=tags.get(aws_plan.TAG_COMMIT),
                artifact=image,
                workspace_entry=aws_plan.workspace_entry(repo, self.ecs.namespace) if tags.get(aws_plan.TAG_COMMIT) else None,
                details={
                    "running": running,
                    "desired": desired,
                    "rollout": primary.get("rolloutState"),
                    "summary": status_line(service),
                    "digest": image.split("@", 1)[1] if image and "@" in image else None,
                    "branch": tags.get(aws_plan.TAG_BRANCH),
                    "spec_hash": tags.get(aws_plan.TAG_SPEC_HASH),
                    "settings": tags.get(aws_plan.TAG_SETTINGS),
                    "task_definition": aws_plan.revision_of(service.get("taskDefinition", "")),
                    "service_arn": service.get("serviceArn"),
                },
            )
        return result

    def platform_services(self) -> list[dict[str, Any]]:
        """The platform's own services (``naming.PLATFORM_SERVICES``) as ECS describes them, in that order:
        name, state, running and desired counts, rollout state; ``missing`` for one that does not exist."""
        found = {
            svc.get("serviceName"): svc
            for svc in self.gateway.describe_services(self.ecs.cluster, list(naming.PLATFORM_SERVICES.values()))
        }
        rows = []
        for short, service in naming.PLATFORM_SERVICES.items():
            svc = found.get(service)
            if svc is None:
                rows.append({"service": service, "logs": f"{naming.PLATFORM_NAME}/{short}", "state": "missing",
                             "running": 0, "desired": 0, "rollout": None})
                continue
            primary = next((d for d in svc.get("deployments") or [] if d.get("status") == "PRIMARY"), {})
            rows.append({
                "service": service, "logs": f"{naming.PLATFORM_NAME}/{short}", "state": observed_state(svc),
                "running": svc.get("runningCount", 0), "desired": svc.get("desiredCount", 0),
                "rollout": primary.get("rolloutState"),
            })
        return rows

    def platform_logs(self, short: str, follow: bool = False, tail: int = 100) -> Iterator[str]:
        """The last ``tail`` lines of one platform service's log group (``/dagster/platform/<short>``)."""
        return self._group_logs(naming.platform_log_group(short), follow, tail)

    def logs(self, name: str, follow: bool = False, tail: int = 100) -> Iterator[str]:
        """The last ``tail`` lines of the repo's log group, newest last; ``follow`` keeps polling."""
        return self._group_logs(naming.log_group(name), follow, tail)

    def _group_logs(self, group: str, follow: bool, tail: int) -> Iterator[str]:
        events = self.gateway.recent_log_events(group, tail) if tail > 0 else self.gateway.log_events(group)
        for event in events:
            yield _format_event(event)
        if not follow:
            return
        seen = {e.get("eventId") for e in events}
        start = events[-1]["timestamp"] if events else int(time.time() * 1000)
        while True:
            time.sleep(LOG_FOLLOW_POLL_S)
            for event in self.gateway.log_events(group, start_ms=start):
                if event.get("eventId") in seen:
                    continue
                seen.add(event.get("eventId"))
                start = max(start, event.get("timestamp", start))
                yield _format_event(event)


def observed_state(service: dict[str, Any]) -> str:
    """One word for list-repos: running, rolling-out, rolled-back, pending or stopped."""
    if service.get("desiredCount", 0) == 0:
        return "stopped"
    if aws_plan.rollout_failed(service):
        return "rolled-back"
    if aws_plan.service_is_stable(service):
        return "running"
    return "rolling-out" if len(service.get("deployments") or []) > 1 else "pending"


def _format_event(event: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event.get("timestamp", 0) / 1000))
    stream = event.get("logStreamName", "").rsplit("/", 1)[-1][:12]
    return f"{stamp} {stream} {event.get('message', '').rstrip()}"
