"""The ``codebuild`` builder: images built by AWS CodeBuild (``META_DEPLOYER_BUILDER=codebuild``).

For a deployer that has no Docker engine (a Fargate task). Same plan, same tag, same
validation as the ``docker`` builder (``images.py``); only who runs the commands differs::

    find(ref): the registry has the tag? (ECR DescribeImages, or the registry's HTTP API) -> no build
    build(job):
        the context -> s3://<bucket>/system/builds/<name>/<tag>.tar.gz
            context/  the commit's tracked files (minus .dockerignore) + the generated files,
                      exactly what the docker builder sends to its engine (images._context_tar)
            runtime/  the runtime layer's context (images._runtime_plan)
        the buildspec (version 0.2) rendered from that BuildPlan (:func:`render_buildspec`):
            install    fetch and unpack the context
            pre_build  log in to ECR (ECR registries only)
            build      docker build the plan's Dockerfile, then the runtime layer, then validate
                       the definitions in a container with no network, and only then tag and push
        StartBuild on the platform's project (``make bootstrap``), privileged for this build only,
            with the deploy run's id as idempotencyToken (:func:`start_build_params`)
        poll BatchGetBuilds, streaming the build's CloudWatch log into the run log
            (GetLogEvents from nextForwardToken) until it ends
        failed: ImageBuildError naming the failing phase, its contexts and the last log lines
        succeeded: the pushed digest, read from the registry -> push_image has nothing left to do

AWS rules relied on (unit-tested in tests/test_codebuild.py against our requests):

- ``privilegedModeOverride``: Docker inside a build needs privileged mode ("Set to true only if the
  build project is used to build Docker images", API reference ``ProjectEnvironment.privilegedMode``);
  the project itself is not privileged, each of our builds asks for it.
- ``idempotencyToken``: "valid for 5 minutes. If you repeat the StartBuild request with the same
  token, but change a parameter, CodeBuild returns a parameter mismatch error" (API reference,
  StartBuild). So the parameters of one job are deterministic (no time, no random value), and a
  retried step of the same run within 5 minutes gets the same build instead of a second one.
- ``timeoutInMinutesOverride``: 5 to 2160 (StartBuild; botocore's model, ``BuildTimeOut``).
- ``sourceTypeOverride`` ``NO_SOURCE``: an S3 source must be a ZIP file or a folder
  (``ProjectSource.location``), and ours is a tar.gz, so the build downloads nothing itself and the
  buildspec fetches the archive with the AWS CLI of the build image.
- A build's log: BatchGetBuilds ``logs.groupName`` / ``logs.streamName``; when they are absent (not
  yet known) the stream of a build in a project logging to a named group is the build id's part
  after ``<project>:``.
"""

from __future__ import annotations

import gzip
import io
import math
import shlex
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from meta_deployer.errors import ImageBuildError, SettingsError
from meta_deployer.model import Log
from meta_deployer.platforms import images
from meta_deployer.platforms.aws.resources.codebuild import BUILDS_PREFIX, log_group_name
from meta_deployer.platforms.location import container_workdir, is_validator_line, validate_command, validation_outcome  # noqa: F401 - is_validator_line is part of this module's API
from meta_deployer.settings import ImageSettings, is_ecr

BUILDSPEC_VERSION = "0.2"
#: StartBuild timeoutInMinutesOverride bounds (botocore: BuildTimeOut min 5, max 2160).
MIN_TIMEOUT_MIN, MAX_TIMEOUT_MIN = 5, 2160
#: Our own wait beyond the build's timeout: queueing and provisioning come first.
QUEUE_GRACE_S = 900.0
#: Folders inside the archive (and in the build's source folder once unpacked).
CONTEXT_DIR, RUNTIME_DIR = "context", "runtime"
ARCHIVE_NAME = "context.tar.gz"
DONE = ("SUCCEEDED", "FAILED", "FAULT", "TIMED_OUT", "STOPPED")
_MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))


def context_key(name: str, tag: str) -> str:
    """``system/builds/<name>/<tag>.tar.gz``: where a build's context goes in the bucket."""
    from meta_deployer import naming

    return f"{BUILDS_PREFIX}{naming.validate_name(name)}/{tag}.tar.gz"


def context_archive(job: images.BuildJob) -> bytes:
    """The build's context as a tar.gz: ``context/`` as the docker builder sends it, ``runtime/`` the runtime layer."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as archive:
        runtime = images._runtime_plan(job.plan, _base_ref(job))
        for folder, plan, root in ((CONTEXT_DIR, job.plan, job.checkout.path), (RUNTIME_DIR, runtime, job.checkout.path)):
            source = images._context_tar(root, plan)
            try:
                with tarfile.open(fileobj=source, mode="r") as inner:
                    for member in inner.getmembers():
                        data = inner.extractfile(member) if member.isfile() else None
                        member.name = f"{folder}/{member.name}"
                        archive.addfile(member, data)
            finally:
                source.close()
    return out.getvalue()


def _base_ref(job: images.BuildJob) -> str:
    return f"{job.repository}:candidate-base-{job.tag}"


def _candidate_ref(job: images.BuildJob) -> str:
    return f"{job.repository}:candidate-{job.tag}"


def _q(value: str) -> str:
    return shlex.quote(value)


def _buildspec(fetch: list[str], ecr: bool, build: list[str]) -> str:
    """The buildspec document: ``fetch`` (install), the ECR login when pushing to ECR (pre_build), ``build``."""
    phases: dict[str, Any] = {"install": {"commands": fetch}}
    if ecr:
        phases["pre_build"] = {"commands": [
            'aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "$MD_REGISTRY"'
        ]}
    phases["build"] = {"commands": build}
    document = {"version": BUILDSPEC_VERSION, "env": {"shell": "bash"}, "phases": phases}
    return yaml.safe_dump(document, sort_keys=False, width=100000)


def render_buildspec(job: images.BuildJob, settings: ImageSettings, ecr: bool) -> str:
    """The buildspec (YAML, version 0.2) that builds, validates and pushes ``job.ref``.

    Every value is quoted for the shell here; the variables CodeBuild sets from
    :func:`build_environment` (``MD_CONTEXT_URL``, ``MD_REGISTRY``) are the only ones read.
    """
    spec, plan = job.spec, job.plan
    base, candidate = _base_ref(job), _candidate_ref(job)
    labels = " ".join(f"--label {_q(f'{k}={v}')}" for k, v in sorted(job.labels.items()))
    env = images.validate_env(spec, settings)
    env_flags = " ".join(f"-e {_q(f'{k}={v}')}" for k, v in sorted(env.items()))
    wd = spec.working_directory or "."
    workdir = '"${img_wd:-/}"' if wd == "." else '"${img_wd%/}"/' + _q(container_workdir("/", spec).lstrip("/"))
    validate = " ".join(_q(part) for part in validate_command())
    fetch = [
        'cd "$CODEBUILD_SRC_DIR"',
        f'aws s3 cp --only-show-errors "$MD_CONTEXT_URL" {ARCHIVE_NAME}',
        f"tar -xzf {ARCHIVE_NAME} && rm -f {ARCHIVE_NAME}",
    ]
    build = [
        'cd "$CODEBUILD_SRC_DIR"',
        "echo 'meta_deployer: building the image from the "
        + ("repo's own Dockerfile" if plan.own_dockerfile else "template Dockerfile") + "'",
        f"docker build --network host -f {_q(f'{CONTEXT_DIR}/{plan.dockerfile}')} -t {_q(base)} {labels} {CONTEXT_DIR}",
        "echo 'meta_deployer: adding the runtime layer'",
        f"docker build --network host -f {RUNTIME_DIR}/Dockerfile -t {_q(candidate)} {labels} {RUNTIME_DIR}",
        "echo 'meta_deployer: validating the definitions (no network)'",
        f"img_wd=$(docker image inspect -f '{{{{.Config.WorkingDir}}}}' {_q(candidate)}) && "
        f"docker run --rm --network none --tmpfs {_q(images.VALIDATE_DAGSTER_HOME + ':mode=1777')} "
        f"-w {workdir} {env_flags} {_q(candidate)} {validate}",
        f"docker tag {_q(candidate)} {_q(job.ref)}",
        f"docker push {_q(job.ref)}",
        f"docker rmi {_q(base)} {_q(candidate)} >/dev/null || true",
    ]
    return _buildspec(fetch, ecr, build)


def render_context_buildspec(ref: str, ecr: bool) -> str:
    """The buildspec that builds a self-contained context (its ``Dockerfile`` at the root) as ``ref`` and pushes
    it: the platform image's (``platforms/platform_image.py``), which has no repo definitions to validate."""
    fetch = [
        'cd "$CODEBUILD_SRC_DIR"',
        f'aws s3 cp --only-show-errors "$MD_CONTEXT_URL" {ARCHIVE_NAME}',
        f"mkdir -p {CONTEXT_DIR} && tar -xzf {ARCHIVE_NAME} -C {CONTEXT_DIR} && rm -f {ARCHIVE_NAME}",
    ]
    build = [
        'cd "$CODEBUILD_SRC_DIR"',
        f"docker build --network host -t {_q(ref)} {CONTEXT_DIR}",
        f"docker push {_q(ref)}",
    ]
    return _buildspec(fetch, ecr, build)


def build_environment(bucket: str, key: str, registry: str) -> dict[str, str]:
    """The variables the buildspec reads, as CodeBuild sets them (plaintext: none is a secret)."""
    return {"MD_CONTEXT_URL": f"s3://{bucket}/{key}", "MD_REGISTRY": registry.split("/")[0]}


def timeout_minutes(build_timeout_s: float) -> int:
    """``META_DEPLOYER_BUILD_TIMEOUT`` in whole minutes, within StartBuild's 5..2160."""
    return max(MIN_TIMEOUT_MIN, min(MAX_TIMEOUT_MIN, math.ceil(build_timeout_s / 60)))


def start_build_params(
    project: str, buildspec: str, environment: Mapping[str, str], token: str, build_timeout_s: float
) -> dict[str, Any]:
    """StartBuild's parameters: our buildspec, privileged for this build only, the token (pure, deterministic)."""
    return {
        "projectName": project,
        "sourceTypeOverride": "NO_SOURCE",
        "buildspecOverride": buildspec,
        "privilegedModeOverride": True,
        "idempotencyToken": token,
        "environmentVariablesOverride": [
            {"name": name, "value": value, "type": "PLAINTEXT"} for name, value in sorted(environment.items())
        ],
        "timeoutInMinutesOverride": timeout_minutes(build_timeout_s),
    }


def log_location(build: Mapping[str, Any], project: str) -> tuple[str, str]:
    """(log group, log stream) of a build; see the module docstring."""
    logs = build.get("logs") or {}
    group = logs.get("groupName") or log_group_name(project)
    stream = logs.get("streamName") or str(build["id"]).split(":", 1)[-1]
    return group, stream


def failure_message(build: Mapping[str, Any], name: str, tail_lines: list[str]) -> str:
    """Why a build failed: its status, the first phase that did not succeed, its contexts, the last lines."""
    status = build.get("buildStatus", "?")
    phases = build.get("phases") or []
    failed = next(
        (p for p in phases if p.get("phaseStatus") not in (None, "SUCCEEDED")),
        {"phaseType": build.get("currentPhase") or "?", "phaseStatus": status},
    )
    contexts = "; ".join(
        ": ".join(x for x in (c.get("statusCode"), c.get("message")) if x) for c in failed.get("contexts") or []
    )
    where = f"phase {failed.get('phaseType')} ({failed.get('phaseStatus')})" + (f": {contexts}" if contexts else "")
    hint = (
        "Fix the Dockerfile or the dependencies (or the code, when the definitions failed to load) and push a new commit"
        if failed.get("phaseType") == "BUILD"
        else "Check the CodeBuild project (make bootstrap) and its service role"
    )
    return (
        f"the CodeBuild build {build.get('id')} of {name} ended {status} in {where}\n"
        f"Last lines of the build log:\n{images.tail(tail_lines)}\n{hint}; nothing was deployed."
    )


def ecr_host(account: str, region: str, partition: str = "aws") -> str:
    """The account's ECR registry host."""
    return f"{account}.dkr.ecr.{region}.amazonaws.com" + (".cn" if partition == "aws-cn" else "")


def http_registry_digest(ref: str, timeout_s: float = 30.0) -> str | None:
    """The digest of ``ref`` from a registry's HTTP API v2 (HEAD of the manifest), or None when missing.

    For registries other than ECR (the deployer has no engine to ask). Loopback registries are
    spoken to over plain HTTP, as the Docker engine does; every other one over HTTPS.
    """
    repo, tag = images.split_ref(ref)
    host, _, path = repo.partition("/")
    scheme = "http" if host.split(":")[0] in ("127.0.0.1", "localhost", "::1") else "https"
    request = urllib.request.Request(
        f"{scheme}://{host}/v2/{path}/manifests/{tag}", method="HEAD", headers={"Accept": _MANIFEST_TYPES}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 404):
            return None
        raise ImageBuildError(f"the registry {host} answered {exc.code} for {ref}") from exc
    except OSError:
        return None  # unreachable: build, and let the push in the build report it


def validated_version(name: str, report: list[str], exit_code: int, tail: list[str]) -> str:
    """The image's Dagster release from the validator's report lines read back from a build log;
    UnsupportedDagsterVersion or ValidationFailed as :func:`~meta_deployer.platforms.location.validation_outcome`."""
    return validation_outcome(name, "the new image (CodeBuild)", "\n".join(report), exit_code, images.tail(tail))


@dataclass
class _Follow:
    """Where the build's log has been read up to, and its last lines."""

    token: str | None = None
    tail: deque[str] | None = None
    #: The validator's report lines (its Dagster release, its result), whatever else the log holds.
    validator: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tail = deque(maxlen=images.TAIL_LINES)


class CodeBuildBuilder:
    """Builds through the platform's CodeBuild project; see the module docstring."""

    name = "codebuild"

    def __init__(self, settings: ImageSettings, gateway: Any = None, sleep: Any = time.sleep):
        from meta_deployer.platforms.aws.gateway import AwsGateway

        self.settings = settings
        self.gw = gateway or AwsGateway()
        self.sleep = sleep
        self.ecr = settings.ecr
        if settings.registry:
            self._registry = settings.registry
        elif self.ecr:
            account, partition = self.gw.identity()
            self._registry = ecr_host(account, self.gw.region, partition)
        else:
            raise SettingsError(
                "META_DEPLOYER_BUILDER=codebuild pushes every image it builds: set META_DEPLOYER_REGISTRY "
                "(an ECR host), or use the ecs platform (the account's ECR)"
            )

    def registry(self) -> str | None:
        return self._registry

    def base_image_id(self, plan: images.BuildPlan) -> str | None:
        return None  # the base is pulled by the build; its name (in the plan) is what the hash covers

    def _digest(self, ref: str) -> str | None:
        if is_ecr(self._registry):
            repo, tag = images.split_ref(ref)
            return self.gw.ecr_image_digest(repo.split("/", 1)[1], tag)
        return http_registry_digest(ref)

    def find(self, ref: str, log: Log) -> dict[str, Any] | None:
        digest = self._digest(ref)
        if not digest:
            return None
        log(f"{ref} is already in the registry (built and validated before): no build, no push")
        return {"in_registry": True, "digest": digest}

    def build(self, job: images.BuildJob, log: Log) -> dict[str, Any]:
        settings = self.settings
        started = time.monotonic()
        if is_ecr(self._registry):
            self._ensure_ecr_repository(job)
        key = context_key(job.spec.name, job.tag)
        archive = context_archive(job)
        self.gw.put_object(settings.bucket, key, archive)
        log(f"uploaded the build context ({len(archive) / 1024:.0f} KiB) to s3://{settings.bucket}/{key}")
        buildspec = render_buildspec(job, settings, is_ecr(self._registry))
        token = job.run_id or uuid.uuid4().hex
        params = start_build_params(
            settings.codebuild_project, buildspec, build_environment(settings.bucket, key, self._registry), token,
            settings.build_timeout_s,
        )
        build = self.gw.start_build(params)
        log(f"CodeBuild build {build['id']} started on project {settings.codebuild_project}")
        state = _Follow()
        build = self.follow(build, job.spec.name, log, state)
        dagster_version = None
        if state.validator:
            dagster_version = validated_version(job.spec.name, state.validator, 0, list(state.tail or ()))
        else:
            log("note: the build log held no validator report, so the image's Dagster release is not recorded")
        digest = self._digest(job.ref)
        if not digest:
            raise ImageBuildError(
                f"the CodeBuild build {build['id']} of {job.spec.name} succeeded but the registry has no {job.ref}; "
                "check that the buildspec's push reached META_DEPLOYER_REGISTRY"
            )
        build_s = time.monotonic() - started
        log(f"built, validated and pushed {job.ref} ({digest}) with CodeBuild in {build_s:.1f}s")
        return {"in_registry": True, "digest": digest, "build_id": build["id"], "build_s": round(build_s, 2),
                "context": f"s3://{settings.bucket}/{key}", "dagster_version": dagster_version}

    def build_context(self, ref: str, context: bytes, labels: Mapping[str, Any], log: Log) -> dict[str, Any]:
        """Build and push a self-contained context (the platform image) with the project: see ``images.Builder``."""
        settings = self.settings
        started = time.monotonic()
        repository, tag = images.split_ref(ref)
        if is_ecr(self._registry):
            name = repository.split("/", 1)[1]
            self.gw.call(
                "ecr", "CreateRepository",
                {"repositoryName": name, "imageTagMutability": "IMMUTABLE", "imageScanningConfiguration": {"scanOnPush": True}},
                resource=f"ECR repository {name}", ok=("RepositoryAlreadyExistsException",),
            )
        key = f"{BUILDS_PREFIX}{repository.rsplit('/', 1)[-1]}/{tag}.tar.gz"
        self.gw.put_object(settings.bucket, key, gzip.compress(context, mtime=0))
        log(f"uploaded the build context ({len(context) / 1024:.0f} KiB) to s3://{settings.bucket}/{key}")
        params = start_build_params(
            settings.codebuild_project, render_context_buildspec(ref, is_ecr(self._registry)),
            build_environment(settings.bucket, key, self._registry), f"{repository.rsplit('/', 1)[-1]}-{tag}",
            settings.build_timeout_s,
        )
        build = self.follow(self.gw.start_build(params), ref, log)
        digest = self._digest(ref)
        if not digest:
            raise ImageBuildError(f"the CodeBuild build {build['id']} succeeded but the registry has no {ref}")
        log(f"built and pushed {ref} ({digest}) with CodeBuild in {time.monotonic() - started:.1f}s")
        return {"digest": digest, "in_registry": True, "build_id": build["id"]}

    def follow(self, build: Mapping[str, Any], name: str, log: Log, state: _Follow | None = None) -> Mapping[str, Any]:
        """Poll the build until it ends, streaming its log; the finished build, or ImageBuildError
        (UnsupportedDagsterVersion or ValidationFailed when the validator's report in the log says so)."""
        project = self.settings.codebuild_project
        state = state or _Follow()
        deadline = time.monotonic() + self.settings.build_timeout_s + QUEUE_GRACE_S
        while True:
            current = self.gw.get_build(build["id"]) or build
            self._stream(current, project, state, log)
            status = current.get("buildStatus")
            if status in DONE:
                self._stream(current, project, state, log)  # what arrived between the two reads
                if status == "SUCCEEDED":
                    return current
                if state.validator:
                    # The validator ran and reported: its verdict (the version error first) says what failed.
                    validated_version(name, state.validator, 1, list(state.tail or ()))
                raise ImageBuildError(failure_message(current, name, list(state.tail or ())))
            if time.monotonic() > deadline:
                self.gw.call("codebuild", "StopBuild", {"id": build["id"]}, resource=f"CodeBuild build {build['id']}")
                raise ImageBuildError(
                    f"the CodeBuild build {build['id']} of {name} took over "
                    f"{self.settings.build_timeout_s + QUEUE_GRACE_S:.0f}s (META_DEPLOYER_BUILD_TIMEOUT plus "
                    f"{QUEUE_GRACE_S:.0f}s of queueing); it was stopped in phase {current.get('currentPhase')}\n"
                    f"{images.tail(state.tail or ())}"
                )
            self.sleep(self.settings.codebuild_poll_interval_s)

    def _stream(self, build: Mapping[str, Any], project: str, state: _Follow, log: Log) -> None:
        group, stream = log_location(build, project)
        while True:
            events, token = self.gw.log_events_after(group, stream, state.token)
            moved = token != state.token
            state.token = token
            for event in events:
                for line in str(event.get("message", "")).splitlines():
                    if line.strip():
                        state.tail.append(line)  # type: ignore[union-attr]
                        if is_validator_line(line):
                            state.validator.append(line.strip())
                        log(line)
            if not events or not moved:
                return

    def _ensure_ecr_repository(self, job: images.BuildJob) -> None:
        from meta_deployer import naming

        repository = naming.ecr_repository(job.spec.name)
        self.gw.call(
            "ecr", "CreateRepository",
            {"repositoryName": repository, "imageTagMutability": "IMMUTABLE",
             "imageScanningConfiguration": {"scanOnPush": True}, "tags": [{"Key": naming.REPO_TAG_KEY, "Value": job.spec.name}]},
            resource=f"ECR repository {repository}", ok=("RepositoryAlreadyExistsException",),
        )


__all__ = [
    "CodeBuildBuilder",
    "build_environment",
    "context_archive",
    "context_key",
    "failure_message",
    "log_location",
    "render_buildspec",
    "render_context_buildspec",
    "start_build_params",
    "timeout_minutes",
]
