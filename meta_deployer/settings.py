"""Settings: every environment variable the deployer reads, in one model (pydantic).

One environment builds four groups, each a frozen pydantic model:

    Settings.from_env(env)             core: platform, paths, webserver, storage, AWS endpoint
      .docker   DockerSettings         the docker platform (networking, ports, health, drain)
      .images   ImageSettings          images for the docker and ecs platforms (registry, base, timeouts)
      .ecs      EcsSettings            the ecs platform (cluster, network, retention, rollouts, retries)

Every field names its variable (``validation_alias``), its default (a named constant
below), its bounds, and in ``description`` the README line it backs ("Settings",
"Images and the docker platform", "The ECS platform"); ``tests/test_settings.py``
holds the two to each other. An empty variable counts as unset. A bad value raises
:class:`SettingsError` naming the variable and what would be valid.

Values derived from settings (is a bucket explicitly configured, the storage folder
under the work area, the deploy fingerprint of the ecs settings) are properties and
methods here, not lookups in the platforms. Relative paths are resolved against
``META_DEPLOYER_ROOT`` (default: the current directory, which the Makefile sets to the
project root). Building a group by keyword (``EcsSettings(cluster="c")``) reads no
environment: only :meth:`from_env` does.

The groups are plain pydantic models read by :func:`_env_values` from one environment mapping:
pydantic-settings' own sources (``os.environ``, dotenv files, JSON-decoding of complex values) are
exactly what this must not do, and importing it cost every CLI call and every run 0.1 s.

``DOCKER_HOST`` and the ``AWS_*`` variables other than ``AWS_ENDPOINT_URL`` belong to the
Docker SDK and boto3, which read them themselves: ``Settings.env`` passes the
environment on to them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo

from meta_deployer.errors import SettingsError

if TYPE_CHECKING:
    from meta_deployer.replicas import ReplicaSource

# -- defaults: core (README "Settings") -------------------------------------------
PLATFORMS = ("dev", "docker", "ecs")
DEFAULT_PLATFORM = "dev"
DEFAULT_REPOS_DIR = "repos"
DEFAULT_WORKSPACE = "workspace/workspace.yaml"
DEFAULT_WORK_DIR = ".meta_deployer"
#: The local storage root, inside the work area, when META_DEPLOYER_STORAGE_DIR is unset.
STORAGE_SUBDIR = "storage"
DEFAULT_WEBSERVER_URL = "http://localhost:3000"
DEFAULT_BUCKET = "dagster-storage"
DEFAULT_RELOAD_TIMEOUT_S = 120.0
#: The dev platform's code servers: time to answer gRPC, and for the old one's runs to finish.
DEFAULT_DEV_HEALTH_TIMEOUT_S = 120.0
DEFAULT_DEV_DRAIN_TIMEOUT_S = 60.0
#: The webservers' port where discovery finds only an address (ECS tasks, docker containers without a port label).
DEFAULT_WEBSERVER_PORT = 3000
DEFAULT_CONFIG_GIT_BRANCH = "main"
#: Where deployment records and deploy leases are kept (META_DEPLOYER_STATE); unset: chosen by platform.
STATE_BACKENDS = ("local", "s3")
DEFAULT_LEASE_TTL_S = 60.0
DEFAULT_LEASE_TIMEOUT_S = 3600.0
#: The configuration repository's checkout, inside the work area (META_DEPLOYER_CONFIG_GIT_URL).
CONFIG_REPO_SUBDIR = "config-repo"
#: Under the work area: the REST API's token hashes (``make api-token``).
API_TOKENS_SUBDIR = "api/tokens.json"
DEFAULT_API_RATE_LIMIT = 30
DEFAULT_API_MAX_BODY_BYTES = 1 << 20

# -- defaults: docker platform ------------------------------------------------------
NETWORK_MODES = ("host", "bridge")
DEFAULT_NETWORK = "host"
#: Below Linux's ephemeral range (32768-60999 by default): an outgoing connection's local
#: port can never sit on a repo's port and make it look taken.
DEFAULT_PORT_BASE = 20000
DEFAULT_PORT_PAIRS = 1000
MIN_PORT, MAX_PORT = 1024, 65535
DEFAULT_HEALTH_TIMEOUT_S = 180.0
DEFAULT_DOCKER_POLL_INTERVAL_S = 0.5
DEFAULT_DRAIN_TIMEOUT_S = 60.0

# -- defaults: images ---------------------------------------------------------------
DEFAULT_BASE_IMAGE = "python:3.12-slim"
DEFAULT_BUILD_TIMEOUT_S = 1800.0
DEFAULT_VALIDATE_TIMEOUT_S = 300.0
#: Who builds images (README "Builders"): an engine through DOCKER_HOST, or AWS CodeBuild.
BUILDERS = ("docker", "codebuild")
DEFAULT_BUILDER = "docker"
DEFAULT_CODEBUILD_PROJECT = "meta-deployer-build"
#: CodeBuild's Linux container compute types (API reference, ComputeType / "Build environment compute
#: types"); the Lambda ones cannot run Docker, so they are not offered.
CODEBUILD_COMPUTE_TYPES = (
    "BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE", "BUILD_GENERAL1_XLARGE", "BUILD_GENERAL1_2XLARGE",
)
DEFAULT_CODEBUILD_COMPUTE_TYPE = "BUILD_GENERAL1_SMALL"
DEFAULT_CODEBUILD_IMAGE = "aws/codebuild/standard:7.0"
DEFAULT_CODEBUILD_POLL_INTERVAL_S = 5.0
#: CreateProject ``name`` (botocore's CodeBuild model: min 2, max 150, this pattern).
CODEBUILD_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_]{1,149}\Z")
#: An ECR registry host: <account>.dkr.ecr.<region>.amazonaws.com.
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?\Z")

# -- defaults: ecs platform ---------------------------------------------------------
#: The Postgres secret's JSON keys, each injected into the platform's and the repos' tasks as one ECS secret
#: (``<arn>:<key>::``) under the variable the instance configuration reads (README "Production on AWS").
PG_SECRET_KEYS = {
    "DAGSTER_PG_HOST": "host", "DAGSTER_PG_PORT": "port", "DAGSTER_PG_DB": "dbname",
    "DAGSTER_PG_USERNAME": "username", "DAGSTER_PG_PASSWORD": "password",
}
DEFAULT_CLUSTER = "dagster"
DEFAULT_NAMESPACE = "local"
#: Shared execution role that ``make bootstrap`` creates (pulls images, writes logs, reads secrets).
DEFAULT_EXECUTION_ROLE_NAME = "dagster-ecs-execution"
DEFAULT_LOG_RETENTION_DAYS = 30
DEFAULT_DESIRED_COUNT = 1
DEFAULT_STABILITY_TIMEOUT_S = 600.0
#: The one-off validation task: Fargate provisioning and the image pull come before the load itself.
DEFAULT_ECS_VALIDATE_TIMEOUT_S = 600.0
DEFAULT_ECS_POLL_INTERVAL_S = 10.0
DEFAULT_HEALTH_CHECK_GRACE_S = 120
DEFAULT_KEEP_REVISIONS = 3
DEFAULT_RETRY_MODE = "standard"
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_TEMP_EXPIRY_DAYS = 7
RETRY_MODES = ("standard", "adaptive")
#: CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_CHOICES = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)
#: EcsSettings fields that change no resource a deploy creates (left out of its fingerprint).
ECS_TRANSIENT_FIELDS = ("stability_timeout_s", "validate_timeout_s", "poll_interval_s", "retry_mode", "max_attempts", "temp_expiry_days")

#: Hosts the git token is sent to (``META_DEPLOYER_GIT_TOKEN_HOSTS``): none unless listed.
DEFAULT_GIT_TOKEN_HOSTS: tuple[str, ...] = ()
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\Z")

# -- README lines the fields back (shared by the groups that read the same variable) --
_PLATFORM_DOC = "where locations run: `dev`, `docker` or `ecs`"
_BUCKET_DOC = "the storage bucket. On `dev`, storage is local unless this is set"


def setting(var: str, default: Any = None, description: str = "", **bounds: Any) -> Any:
    """A field read from the environment variable ``var``; ``description`` is its README line."""
    if callable(default):
        return Field(default_factory=default, validation_alias=var, description=description, **bounds)
    return Field(default, validation_alias=var, description=description, **bounds)


def env_var(field: FieldInfo) -> str | None:
    """The environment variable a field is read from (None for a group or a derived field)."""
    return field.validation_alias if isinstance(field.validation_alias, str) else None


def is_ecr(registry: str | None) -> bool:
    """True when ``registry`` is an ECR host (``<account>.dkr.ecr.<region>.amazonaws.com``)."""
    return bool(registry) and bool(ECR_HOST.match(str(registry).split("/")[0]))


def _env_values(model: type[BaseModel], env: Mapping[str, str]) -> dict[str, str]:
    """The model's variables from one environment mapping, as raw strings, by variable name; empty means unset."""
    values = {}
    for field in model.model_fields.values():
        var = env_var(field)
        if var and env.get(var) not in (None, ""):
            values[var] = env[var]
    return values


def _settings_error(model: type[BaseModel], exc: ValidationError) -> SettingsError:
    """One actionable message per problem: the variable, its value and what would be valid."""
    fields = model.model_fields
    lines = []
    for err in exc.errors(include_url=False):
        loc = err["loc"][0] if err["loc"] else None
        var = env_var(fields[loc]) if loc in fields else loc
        ctx = err.get("ctx") or {}
        kind = err["type"]
        if kind == "value_error":
            what = str(ctx.get("error", err["msg"]))
        elif kind in ("int_parsing", "int_from_float", "int_type"):
            what = "must be a whole number"
        elif kind in ("float_parsing", "float_type", "finite_number"):
            what = "must be a number"
        elif kind == "greater_than":
            what = "must be positive" if ctx.get("gt") == 0 else f"must be greater than {ctx.get('gt'):g}"
        elif kind == "greater_than_equal":
            what = f"must be at least {ctx.get('ge'):g}"
        elif kind == "less_than_equal":
            what = f"must be at most {ctx.get('le'):g}"
        elif kind == "literal_error":
            what = f"use one of {ctx.get('expected', '').replace(' or ', ', ').replace(chr(39), '')}"
        else:
            what = err["msg"]
        lines.append(f"{var}={err['input']!r}: {what}" if var else what)
    return SettingsError("; ".join(lines))


class SettingsGroup(BaseModel):
    """Base of the groups: frozen, read only by :meth:`from_env`, never from ``os.environ`` on construction."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", validate_default=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Any:
        """Read the group from ``env`` (default ``os.environ``)."""
        return cls._read(os.environ if env is None else env)

    def replace(self, **changes: Any) -> Any:
        """A validated copy with ``changes`` (field names), as ``dataclasses.replace`` did; fields left
        at their default stay defaults (so derived values such as ``storage_bucket`` follow)."""
        try:
            return type(self)(**{**{name: getattr(self, name) for name in self.model_fields_set}, **changes})
        except ValidationError as exc:
            raise _settings_error(type(self), exc) from None

    def as_env(self) -> dict[str, str]:
        """The settings set explicitly (from the environment or :meth:`replace`), back as the variables
        :meth:`from_env` reads (lists comma-separated): what a process started elsewhere needs to
        read the same group. Fields left at their default are left out (the other side has them too)."""
        env = {}
        for name in sorted(self.model_fields_set):
            var, value = env_var(type(self).model_fields[name]), getattr(self, name)
            if var is None or value is None:
                continue
            env[var] = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
        return env

    @classmethod
    def _read(cls, env: Mapping[str, str], /, **values: Any) -> Any:
        """The group from ``env`` plus ``values``, fields that are already built; SettingsError when invalid."""
        try:
            return cls(**_env_values(cls, env), **values)
        except ValidationError as exc:
            raise _settings_error(cls, exc) from None


def _no_trailing_slash(value: str | None) -> str | None:
    return (value or "").strip().rstrip("/") or None


# -- the groups ---------------------------------------------------------------------------


class DockerSettings(SettingsGroup):
    """The docker platform (README "Images and the docker platform"; meta_deployer.platforms.docker)."""

    network: Literal["host", "bridge"] = setting("META_DEPLOYER_DOCKER_NETWORK", DEFAULT_NETWORK, "`host` or `bridge`")
    port_base: int = setting(
        "META_DEPLOYER_DOCKER_PORT_BASE",
        DEFAULT_PORT_BASE,
        "the first port of the range of port pairs (kept below Linux's ephemeral ports, 32768–60999, "
        "so outgoing connections never take a repo's port)",
        ge=MIN_PORT,
        le=MAX_PORT,
    )
    port_pairs: int = setting(
        "META_DEPLOYER_DOCKER_PORT_PAIRS", DEFAULT_PORT_PAIRS, "how many port pairs the range holds", ge=1
    )
    health_timeout_s: float = setting(
        "META_DEPLOYER_HEALTH_TIMEOUT", DEFAULT_HEALTH_TIMEOUT_S, "seconds a new container has to answer gRPC", ge=0
    )
    poll_interval_s: float = setting(
        "META_DEPLOYER_DOCKER_POLL_INTERVAL", DEFAULT_DOCKER_POLL_INTERVAL_S, "seconds between health polls", ge=0
    )
    drain_timeout_s: float = setting(
        "META_DEPLOYER_DOCKER_DRAIN_TIMEOUT",
        DEFAULT_DRAIN_TIMEOUT_S,
        "seconds the old server's runs may take to finish",
        ge=0,
    )
    dagster_home: Path | None = setting(
        "DAGSTER_HOME", None, "the Dagster instance; `dagster.yaml` is copied there"
    )
    location_env: tuple[str, ...] = setting(
        "META_DEPLOYER_DOCKER_LOCATION_ENV",
        (),
        "comma-separated names of the deployer's environment variables copied into every location "
        "container and its runs (platform-wide credentials where no instance role gives them, e.g. "
        "`AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY` for an S3-compatible store); never the deployer's own secrets",
    )
    container_context: str | None = setting(
        "META_DEPLOYER_DOCKER_CONTAINER_CONTEXT", None, "JSON passed to the container as `DAGSTER_CONTAINER_CONTEXT`"
    )

    @field_validator("dagster_home")
    @classmethod
    def _absolute_home(cls, value: Path | None) -> Path | None:
        return value.resolve() if value else None

    @field_validator("location_env", mode="before")
    @classmethod
    def _env_names(cls, value: Any) -> tuple[str, ...]:
        from meta_deployer_runtime.contract import DEPLOYER_ONLY_PREFIXES

        names = tuple(n.strip() for n in value.split(",") if n.strip()) if isinstance(value, str) else tuple(value)
        for name in names:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name.startswith(DEPLOYER_ONLY_PREFIXES) or name in ("DOCKER_HOST", "DAGSTER_POSTGRES_URL"):
                raise ValueError(f"{name} is the deployer's own; it never goes into a location")
        return names

    @field_validator("container_context")
    @classmethod
    def _json(cls, value: str | None) -> str | None:
        if value:
            try:
                json.loads(value)
            except ValueError:
                raise ValueError("must be JSON") from None
        return value or None

    @model_validator(mode="after")
    def _ports_in_range(self) -> "DockerSettings":
        last = self.port_base + 2 * self.port_pairs - 1
        if last > MAX_PORT:
            raise ValueError(
                f"ports {self.port_base}..{last} (META_DEPLOYER_DOCKER_PORT_BASE/_PAIRS) "
                f"must lie within {MIN_PORT}..{MAX_PORT}"
            )
        return self


class ImageSettings(SettingsGroup):
    """Images for the docker and ecs platforms (README "Images and the docker platform")."""

    registry: str | None = setting(
        "META_DEPLOYER_REGISTRY",
        None,
        "where images are pushed (`127.0.0.1:5000`, an ECR host, …); unset: images stay on the engine (docker) "
        "or go to the account's ECR (ecs)",
    )
    base_image: str = setting("META_DEPLOYER_BASE_IMAGE", DEFAULT_BASE_IMAGE, "base of the image template")
    build_timeout_s: float = setting(
        "META_DEPLOYER_BUILD_TIMEOUT", DEFAULT_BUILD_TIMEOUT_S, "seconds an image build may take", gt=0
    )
    validate_timeout_s: float = setting(
        "META_DEPLOYER_VALIDATE_TIMEOUT",
        DEFAULT_VALIDATE_TIMEOUT_S,
        "seconds loading the definitions in a new image may take",
        gt=0,
    )
    instance_packages: tuple[str, ...] | None = setting(
        "META_DEPLOYER_INSTANCE_PACKAGES",
        None,
        "comma-separated Dagster packages the instance's classes need inside every templated image "
        "(run workers open the instance there), e.g. `dagster-postgres,dagster-docker`; paired with the repo's Dagster release (those in the base image are not installed again)",
    )
    builder: Literal["docker", "codebuild"] = setting(
        "META_DEPLOYER_BUILDER",
        DEFAULT_BUILDER,
        "who builds images: `docker` (the engine at `DOCKER_HOST`, local or remote) or `codebuild` (AWS CodeBuild, "
        "through the project `make bootstrap` creates)",
    )
    codebuild_project: str = setting(
        "META_DEPLOYER_CODEBUILD_PROJECT", DEFAULT_CODEBUILD_PROJECT, "the CodeBuild project (one per platform)"
    )
    codebuild_compute_type: Literal[CODEBUILD_COMPUTE_TYPES] = setting(  # type: ignore[valid-type]
        "META_DEPLOYER_CODEBUILD_COMPUTE_TYPE", DEFAULT_CODEBUILD_COMPUTE_TYPE, "the CodeBuild project's compute type"
    )
    codebuild_image: str = setting(
        "META_DEPLOYER_CODEBUILD_IMAGE", DEFAULT_CODEBUILD_IMAGE, "the CodeBuild project's build image (it must have Docker and the AWS CLI)"
    )
    codebuild_poll_interval_s: float = setting(
        "META_DEPLOYER_CODEBUILD_POLL_INTERVAL",
        DEFAULT_CODEBUILD_POLL_INTERVAL_S,
        "seconds between checks of a running CodeBuild build (and reads of its log)",
        ge=0,
    )
    platform: Literal["dev", "docker", "ecs"] = setting("META_DEPLOYER_PLATFORM", DEFAULT_PLATFORM, _PLATFORM_DOC)
    bucket: str = setting("META_DEPLOYER_BUCKET", DEFAULT_BUCKET, _BUCKET_DOC)
    env: Mapping[str, str] = Field(
        default_factory=dict, exclude=True, repr=False, description="Derived: the environment, for the Docker SDK and boto3"
    )

    @field_validator("instance_packages", mode="before")
    @classmethod
    def _family_packages(cls, value: Any) -> tuple[str, ...] | None:
        from meta_deployer import versions

        if value is None:
            return None
        names = tuple(n.strip().lower() for n in value.split(",") if n.strip()) if isinstance(value, str) else tuple(value)
        family = sorted(n for n in versions.pins() if n.startswith("dagster-"))
        for name in names:
            if name not in family:
                raise ValueError(f"{name!r} is not a pinned Dagster package; choose from {', '.join(family)}")
        return names

    @field_validator("codebuild_project")
    @classmethod
    def _codebuild_project_name(cls, value: str) -> str:
        if not CODEBUILD_PROJECT_NAME.match(value):
            raise ValueError(
                "must be a CodeBuild project name: 2-150 letters, digits, '-' or '_', starting with a letter or digit"
            )
        return value

    @field_validator("registry")
    @classmethod
    def _registry_host(cls, value: str | None) -> str | None:
        value = _no_trailing_slash(value)
        if value and ("://" in value or " " in value):
            raise ValueError(
                "must be a registry host[:port][/path] without a scheme, "
                "e.g. 127.0.0.1:5000 or 123456789012.dkr.ecr.us-east-1.amazonaws.com"
            )
        return value

    @property
    def ecr(self) -> bool:
        """Push to ECR: the registry is an ECR host, or no registry is set on the ecs platform."""
        return is_ecr(self.registry) or (self.registry is None and self.platform == "ecs")

    @property
    def storage_bucket(self) -> str | None:
        """The bucket when one is configured explicitly (storage in S3), else None (local storage)."""
        return self.bucket if "bucket" in self.model_fields_set else None

    @property
    def extra_requirements(self) -> tuple[str, ...]:
        """What the instance's classes need in templated images: META_DEPLOYER_INSTANCE_PACKAGES when
        set; else dagster-aws when storage is in S3, and dagster-postgres too on ecs (the Dagster family's pins, from meta_deployer.versions)."""
        from meta_deployer import versions

        if self.instance_packages is not None:
            return tuple(versions.requirement(name) for name in self.instance_packages)
        if self.platform == "ecs":
            return (versions.requirement("dagster-aws"), versions.requirement("dagster-postgres"))
        return (versions.requirement("dagster-aws"),) if self.storage_bucket else ()


class EcsSettings(SettingsGroup):
    """Where and how the ecs platform deploys (README "The ECS platform")."""

    cluster: str = setting("META_DEPLOYER_ECS_CLUSTER", DEFAULT_CLUSTER, "the cluster")
    subnets: tuple[str, ...] = setting(
        "META_DEPLOYER_SUBNETS", (), "private subnets, comma-separated (no public IP is assigned)"
    )
    security_groups: tuple[str, ...] = setting(
        "META_DEPLOYER_SECURITY_GROUPS", (), "security groups, comma-separated"
    )
    vpc_id: str | None = setting("META_DEPLOYER_VPC_ID", None, "the VPC")
    namespace: str = setting("META_DEPLOYER_NAMESPACE", DEFAULT_NAMESPACE, "the Cloud Map private DNS namespace")
    execution_role_arn: str | None = setting(
        "META_DEPLOYER_EXECUTION_ROLE_ARN",
        None,
        "a shared execution role for bootstrap to use as is; repo tasks never use it (each has `dagster-exec-<name>`)",
    )  # None: the role make bootstrap creates
    pg_secret_arn: str | None = setting(
        "META_DEPLOYER_PG_SECRET_ARN",
        None,
        "the full ARN of the Secrets Manager secret holding the instance's Postgres as JSON (`host`, `port`, "
        "`dbname`, `username`, `password`); every repo task definition and the platform's three get them as "
        "`secrets` (`DAGSTER_PG_*`) and their execution roles may read this one secret; required by `make platform`",
    )
    bucket: str = setting("META_DEPLOYER_BUCKET", DEFAULT_BUCKET, _BUCKET_DOC)
    registry: str | None = setting("META_DEPLOYER_REGISTRY", None, "where images are pushed")  # None: the account's ECR
    lb_listener_arn: str | None = setting(
        "META_DEPLOYER_LB_LISTENER_ARN", None, "when set, each repo gets a gRPC target group and a listener rule"
    )
    log_retention_days: int = setting(
        "META_DEPLOYER_LOG_RETENTION_DAYS", DEFAULT_LOG_RETENTION_DAYS, "log group retention", ge=1
    )
    desired_count: int = setting("META_DEPLOYER_ECS_DESIRED_COUNT", DEFAULT_DESIRED_COUNT, "tasks per service", ge=0)
    stability_timeout_s: float = setting(
        "META_DEPLOYER_ECS_STABILITY_TIMEOUT",
        DEFAULT_STABILITY_TIMEOUT_S,
        "seconds to wait for a stable deployment",
        ge=0,
    )
    validate_timeout_s: float = setting(
        "META_DEPLOYER_ECS_VALIDATE_TIMEOUT",
        DEFAULT_ECS_VALIDATE_TIMEOUT_S,
        "seconds the one-off validation task may take, from RunTask to its exit (provisioning and the image "
        "pull included); past it the task is stopped and the deploy fails",
        ge=0,
    )
    poll_interval_s: float = setting(
        "META_DEPLOYER_ECS_POLL_INTERVAL", DEFAULT_ECS_POLL_INTERVAL_S, "seconds between checks while waiting", ge=0
    )
    health_check_grace_s: int = setting(
        "META_DEPLOYER_ECS_HEALTH_CHECK_GRACE",
        DEFAULT_HEALTH_CHECK_GRACE_S,
        "the service's health-check grace period, in seconds",
        ge=0,
    )
    keep_revisions: int = setting(
        "META_DEPLOYER_ECS_KEEP_REVISIONS", DEFAULT_KEEP_REVISIONS, "task definition revisions kept", ge=1
    )
    retry_mode: Literal["standard", "adaptive"] = setting(
        "META_DEPLOYER_AWS_RETRY_MODE", DEFAULT_RETRY_MODE, "botocore retry mode (`standard` or `adaptive`)"
    )
    max_attempts: int = setting(
        "META_DEPLOYER_AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, "botocore total attempts per call", ge=1
    )
    temp_expiry_days: int = setting(
        "META_DEPLOYER_TEMP_EXPIRY_DAYS", DEFAULT_TEMP_EXPIRY_DAYS, "lifecycle expiry of `temp/`", ge=1
    )

    @field_validator("subnets", "security_groups", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else (value or ())
        return tuple(sorted({v.strip() for v in items if v.strip()}))

    @field_validator("vpc_id", "execution_role_arn", "lb_listener_arn")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str | None) -> str | None:
        return (value or "").rstrip("/") or None

    @field_validator("pg_secret_arn")
    @classmethod
    def _pg_secret_arn(cls, value: str | None) -> str | None:
        from meta_deployer.spec import secretsmanager_arn_problem

        if value and (problem := secretsmanager_arn_problem(value)):
            raise ValueError(problem)
        return value or None

    @field_validator("log_retention_days")
    @classmethod
    def _cloudwatch_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_CHOICES:
            raise ValueError(
                f"is not a CloudWatch retention; use one of {', '.join(map(str, LOG_RETENTION_CHOICES))}"
            )
        return value

    def deploy_fingerprint(self) -> str:
        """A hash of the settings that change what a deploy creates (not timeouts or retries)."""
        data = self.model_dump(exclude=set(ECS_TRANSIENT_FIELDS))
        if data.get("pg_secret_arn") is None:  # unset: the fingerprint of deploys made before the setting existed
            data.pop("pg_secret_arn", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def require_network(self) -> None:
        """Raise SettingsError unless subnets and security groups are set (needed to create a service)."""
        missing = [
            var
            for var, value in (("META_DEPLOYER_SUBNETS", self.subnets), ("META_DEPLOYER_SECURITY_GROUPS", self.security_groups))
            if not value
        ]
        if missing:
            raise SettingsError(
                f"{' and '.join(missing)} must be set for the ecs platform "
                "(comma-separated private subnet and security group ids)"
            )


# -- the platform's own services on ECS (make platform) ------------------------------------
#: ``make platform``: webserver replicas (README "The ECS platform", "make platform").
DEFAULT_PLATFORM_WEBSERVER_COUNT = 2
#: META_DEPLOYER_PLATFORM_IMAGE: an image reference by digest.
PLATFORM_IMAGE_BY_DIGEST = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}\Z")
PLATFORM_AUTH_KINDS = ("oidc", "cognito")
#: EC2 security group ids (``sg-`` and 8 or 17 hex digits).
SECURITY_GROUP_ID = re.compile(r"^sg-([0-9a-f]{8}|[0-9a-f]{17})\Z")


class PlatformAwsSettings(SettingsGroup):
    """``make platform``: the webserver, daemon and deployer services on ECS (README "The ECS platform")."""

    image: str | None = setting(
        "META_DEPLOYER_PLATFORM_IMAGE", None,
        "a platform image (webserver, daemon and deployer) to run as is, by digest (`<repository>@sha256:<64 hex>`); "
        "unset: `make platform` builds it with `META_DEPLOYER_BUILDER` and pushes it to `dagster/platform` in "
        "`META_DEPLOYER_REGISTRY` or the account's ECR",
    )
    webserver_count: int = setting(
        "META_DEPLOYER_PLATFORM_WEBSERVER_COUNT", DEFAULT_PLATFORM_WEBSERVER_COUNT, "tasks of the `dagster-webserver` service", ge=1
    )
    host: str | None = setting(
        "META_DEPLOYER_PLATFORM_HOST", None,
        "the webserver's host name on the load balancer (the listener rule's host header); required with `META_DEPLOYER_LB_LISTENER_ARN`",
    )
    allowed_security_groups: tuple[str, ...] = setting(
        "META_DEPLOYER_PLATFORM_ALLOWED_SECURITY_GROUPS", (),
        "without a load balancer: the only security groups whose members may reach the webserver (port 3000), comma-separated",
    )
    auth: Literal["oidc", "cognito"] | None = setting(
        "META_DEPLOYER_PLATFORM_AUTH", None,
        "how the listener rule authenticates before it forwards to the webserver: `oidc` or `cognito`; required with `META_DEPLOYER_LB_LISTENER_ARN`",
    )
    oidc_issuer: str | None = setting("META_DEPLOYER_OIDC_ISSUER", None, "`oidc`: the identity provider's issuer URL")
    oidc_authorization_endpoint: str | None = setting(
        "META_DEPLOYER_OIDC_AUTHORIZATION_ENDPOINT", None, "`oidc`: its authorization endpoint (https)"
    )
    oidc_token_endpoint: str | None = setting("META_DEPLOYER_OIDC_TOKEN_ENDPOINT", None, "`oidc`: its token endpoint (https)")
    oidc_user_info_endpoint: str | None = setting(
        "META_DEPLOYER_OIDC_USER_INFO_ENDPOINT", None, "`oidc`: its user info endpoint (https)"
    )
    oidc_client_id: str | None = setting("META_DEPLOYER_OIDC_CLIENT_ID", None, "`oidc`: the client id")
    oidc_client_secret_arn: str | None = setting(
        "META_DEPLOYER_OIDC_CLIENT_SECRET_ARN", None,
        "`oidc`: the Secrets Manager ARN of the client secret, read when the rule is created (never a plain value)",
    )
    cognito_user_pool_arn: str | None = setting("META_DEPLOYER_COGNITO_USER_POOL_ARN", None, "`cognito`: the user pool ARN")
    cognito_client_id: str | None = setting("META_DEPLOYER_COGNITO_CLIENT_ID", None, "`cognito`: the user pool app client id")
    cognito_domain: str | None = setting("META_DEPLOYER_COGNITO_DOMAIN", None, "`cognito`: the user pool domain prefix")

    @field_validator("allowed_security_groups", mode="before")
    @classmethod
    def _security_groups(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else (value or ())
        groups = tuple(sorted({v.strip() for v in items if v.strip()}))
        for group in groups:
            if not SECURITY_GROUP_ID.match(group):
                raise ValueError(f"{group!r} is not a security group id (sg- and 8 or 17 hex digits)")
        return groups

    @field_validator("image")
    @classmethod
    def _by_digest(cls, value: str | None) -> str | None:
        if value and not PLATFORM_IMAGE_BY_DIGEST.match(value):
            raise ValueError(
                "must name the image by digest, <repository>@sha256:<64 hex digits> (a tag can move under running "
                "tasks); unset it to have make platform build and push the image"
            )
        return value or None

    @field_validator("oidc_client_secret_arn")
    @classmethod
    def _secret_arn(cls, value: str | None) -> str | None:
        if value and not re.match(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+\Z", value):
            raise ValueError("must be a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:...)")
        return value or None


# -- the core settings, holding the groups ------------------------------------------------


class Settings(SettingsGroup):
    """The deployer's settings (README "Settings") and its platform groups; build with :meth:`from_env`."""

    platform: Literal["dev", "docker", "ecs"] = setting("META_DEPLOYER_PLATFORM", DEFAULT_PLATFORM, _PLATFORM_DOC)
    root: Path = setting("META_DEPLOYER_ROOT", Path.cwd, "base of relative paths")
    repos_dir: Path = setting("META_DEPLOYER_REPOS_DIR", Path(DEFAULT_REPOS_DIR), "where `<name>/config.yml` files live")
    config_git_url: str | None = setting(
        "META_DEPLOYER_CONFIG_GIT_URL",
        None,
        "the platform's configuration repository (GitOps): when set, the `repos_sensor`, `sync-repos`, `validate` "
        "and `list-repos` read `repos/<name>/config.yml` from its branch, fetched at each tick, instead of "
        "`META_DEPLOYER_REPOS_DIR`, and deploys write no local config.yml",
    )
    config_git_branch: str = setting(
        "META_DEPLOYER_CONFIG_GIT_BRANCH", DEFAULT_CONFIG_GIT_BRANCH, "the configuration repository's branch"
    )
    workspace: Path = setting("META_DEPLOYER_WORKSPACE", Path(DEFAULT_WORKSPACE), "the generated workspace file")
    work_dir: Path = setting(
        "META_DEPLOYER_WORK_DIR",
        Path(DEFAULT_WORK_DIR),
        "checkouts, virtualenvs, deployment records, logs, local storage",
    )
    webserver_url: str = setting(
        "DAGSTER_WEBSERVER_URL", DEFAULT_WEBSERVER_URL, "where `reloadWorkspace` is sent; no answer is a warning"
    )
    webservers: str | None = setting(
        "META_DEPLOYER_WEBSERVERS",
        None,
        "which webserver replicas every reload goes to, each on its own address: comma-separated URLs, "
        "`docker:<label>[,<label>]` (the running containers with those labels, e.g. "
        "`docker:meta-deployer.role=webserver`) or `ecs:<cluster>/<service>` (the service's RUNNING tasks at their "
        "private IPv4 address); a replica that does not answer is a warning naming it",
    )  # None: the one DAGSTER_WEBSERVER_URL
    webserver_port: int = setting(
        "META_DEPLOYER_WEBSERVER_PORT",
        DEFAULT_WEBSERVER_PORT,
        "the replicas' port for `ecs:` and for `docker:` containers without a `meta-deployer.port` label",
        ge=1,
        le=MAX_PORT,
    )
    dagster_url: str | None = setting(
        "META_DEPLOYER_DAGSTER_URL",
        None,
        "the central Dagster webserver: when set, `make add-repo`, `update-repo`, `remove-repo` and `sync-repos` "
        "launch their run there over GraphQL and follow it instead of running it locally",
    )
    self_server: str | None = setting(
        "META_DEPLOYER_SELF_SERVER",
        None,
        "`host:port` of the deployer's own gRPC code server, where it runs as one (the platform); "
        "workspace.yaml then points the `meta_deployer` location there instead of loading the module",
    )
    reload_timeout_s: float = setting(
        "META_DEPLOYER_RELOAD_TIMEOUT", DEFAULT_RELOAD_TIMEOUT_S, "seconds to wait for the reload", gt=0
    )
    dev_health_timeout_s: float = setting(
        "META_DEPLOYER_DEV_HEALTH_TIMEOUT", DEFAULT_DEV_HEALTH_TIMEOUT_S,
        "dev platform: seconds a location's new code server has to answer gRPC", gt=0,
    )
    dev_drain_timeout_s: float = setting(
        "META_DEPLOYER_DEV_DRAIN_TIMEOUT", DEFAULT_DEV_DRAIN_TIMEOUT_S,
        "dev platform: seconds the old code server's runs may take to finish after an update", ge=0,
    )
    bucket: str = setting("META_DEPLOYER_BUCKET", DEFAULT_BUCKET, _BUCKET_DOC)
    storage_dir: Path | None = setting(
        "META_DEPLOYER_STORAGE_DIR", None, "local storage root (dev platform without a bucket)"
    )  # None: <work_dir>/storage, filled in by validation
    state: Literal["local", "s3"] | None = setting(
        "META_DEPLOYER_STATE",
        None,
        "where deployment records and deploy leases are kept: `local` (files and `flock`s under "
        "`META_DEPLOYER_WORK_DIR`, one machine) or `s3` (`system/deployments/<name>.json` and "
        "`system/leases/<name>.json` in `META_DEPLOYER_BUCKET`, seen by every task). Unset: the storage root's, "
        "`s3` on `ecs` and on `docker` with `META_DEPLOYER_BUCKET` set, else `local`; `dev` is always `local` unless set",
    )
    lease_ttl_s: float = setting(
        "META_DEPLOYER_LEASE_TTL",
        DEFAULT_LEASE_TTL_S,
        "seconds an `s3` deploy lease lasts unless its holder renews it (every third of this); a killed deploy's "
        "lease is taken over after at most this long",
        gt=0,
    )
    lease_timeout_s: float = setting(
        "META_DEPLOYER_LEASE_TIMEOUT",
        DEFAULT_LEASE_TIMEOUT_S,
        "seconds a deploy waits for another deploy of the same repo to let go of its lease before it fails",
        gt=0,
    )
    git_token_file: Path | None = setting(
        "META_DEPLOYER_GIT_TOKEN_FILE",
        None,
        "a file holding a git token for https remotes; passed to git through its environment (as per-host "
        "configuration `http.https://<host>/.extraHeader`), never on a command line, and redacted from every message",
    )
    git_token_hosts: tuple[str, ...] = setting(
        "META_DEPLOYER_GIT_TOKEN_HOSTS",
        DEFAULT_GIT_TOKEN_HOSTS,
        "comma-separated host names (`github.com,git.example.com`) that may receive the token; only over "
        "`https://`, never over plain `http://` nor to any other host",
    )
    git_ssh_key_file: Path | None = setting(
        "META_DEPLOYER_GIT_SSH_KEY_FILE",
        None,
        "an SSH deploy key for private repositories (`ssh://`, `user@host:path`); needs "
        "`META_DEPLOYER_GIT_KNOWN_HOSTS_FILE`",
    )
    git_known_hosts_file: Path | None = setting(
        "META_DEPLOYER_GIT_KNOWN_HOSTS_FILE",
        None,
        "the pinned `known_hosts` file for git over SSH; git runs ssh with `StrictHostKeyChecking=yes` against "
        "it only (and `IdentitiesOnly=yes` with the key)",
    )
    api_tokens_file: Path | None = setting(
        "META_DEPLOYER_API_TOKENS_FILE",
        None,
        "the REST API's bearer tokens, stored only as SHA-256 hashes with their scopes (`make api-token` adds one)",
    )  # None: <work_dir>/api/tokens.json, filled in by validation
    api_tokens_secret_arn: str | None = setting(
        "META_DEPLOYER_API_TOKENS_SECRET_ARN",
        None,
        "production: the API's token hashes live in this Secrets Manager secret (the same JSON as the tokens "
        "file) instead of the file; `make api-token` writes a new version of it",
    )
    webhook_secret_file: Path | None = setting(
        "META_DEPLOYER_WEBHOOK_SECRET_FILE",
        None,
        "a file holding the webhook secret: GitHub's `X-Hub-Signature-256` HMAC key and GitLab's `X-Gitlab-Token`; "
        "unset, every webhook is refused",
    )
    api_rate_limit: int = setting(
        "META_DEPLOYER_API_RATE_LIMIT",
        DEFAULT_API_RATE_LIMIT,
        "mutations one API token may make per minute; past it the API answers 429",
        ge=1,
    )
    api_max_body_bytes: int = setting(
        "META_DEPLOYER_API_MAX_BODY",
        DEFAULT_API_MAX_BODY_BYTES,
        "the largest request body the API reads, in bytes; a larger one is refused with 413",
        ge=1024,
    )
    aws_endpoint_url: str | None = setting(
        "AWS_ENDPOINT_URL", None, "any AWS endpoint (boto3 reads it); the tests point it at a moto server"
    )
    docker: DockerSettings = Field(default_factory=DockerSettings, description="Group: the docker platform")
    images: ImageSettings = Field(default_factory=ImageSettings, description="Group: images (docker and ecs)")
    ecs: EcsSettings = Field(default_factory=EcsSettings, description="Group: the ecs platform")
    platform_aws: PlatformAwsSettings = Field(
        default_factory=PlatformAwsSettings, description="Group: make platform (the platform's services on ECS)"
    )
    env: Mapping[str, str] = Field(
        default_factory=dict, exclude=True, repr=False, description="Derived: the environment, for the Docker SDK and boto3"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read every group from ``env`` (default ``os.environ``): the one reader of the environment."""
        env = dict(os.environ if env is None else env)
        groups = {
            "docker": DockerSettings.from_env(env),
            "images": ImageSettings._read(env, env=env),
            "ecs": EcsSettings.from_env(env),
            "platform_aws": PlatformAwsSettings.from_env(env),
        }
        return cls._read(env, env=env, **groups)

    def with_platform(self, platform: str) -> "Settings":
        """The same settings on another platform (every group that depends on it follows)."""
        return Settings.from_env({**self.env, "META_DEPLOYER_PLATFORM": platform})

    # -- validation: paths under the root -----------------------------------------
    @field_validator("root")
    @classmethod
    def _absolute_root(cls, value: Path) -> Path:
        return value.resolve()

    @field_validator("self_server")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if not value:
            return None
        host, _, port = value.rpartition(":")
        if not HOST_NAME.match(host.lower()) or not port.isdigit() or not MIN_PORT <= int(port) <= MAX_PORT:
            raise ValueError(f"must be host:port (a host name or IPv4 address, a port in {MIN_PORT}..{MAX_PORT}), e.g. localhost:4266")
        return value

    @field_validator("git_token_hosts", mode="before")
    @classmethod
    def _host_names(cls, value: Any) -> tuple[str, ...]:
        hosts = tuple(h.strip().lower() for h in value.split(",") if h.strip()) if isinstance(value, str) else tuple(value)
        for host in hosts:
            if not HOST_NAME.match(host):
                raise ValueError(
                    f"{host!r} is not a host name; list bare host names separated by commas (for example "
                    "github.com,git.example.com), without scheme, port, user or path"
                )
        return hosts

    @field_validator("config_git_url")
    @classmethod
    def _config_git_url(cls, value: str | None) -> str | None:
        from meta_deployer.spec import git_url_problem

        problem = git_url_problem(value) if value else None
        if problem:
            raise ValueError(problem)
        return value or None

    @field_validator("config_git_branch")
    @classmethod
    def _config_git_branch(cls, value: str) -> str:
        from meta_deployer.spec import branch_problem

        problem = branch_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _ssh_key_needs_known_hosts(self) -> "Settings":
        if self.git_ssh_key_file and not self.git_known_hosts_file:
            raise ValueError(
                "META_DEPLOYER_GIT_SSH_KEY_FILE is set but META_DEPLOYER_GIT_KNOWN_HOSTS_FILE is not: an SSH deploy "
                "key is only used against pinned host keys; set META_DEPLOYER_GIT_KNOWN_HOSTS_FILE to a known_hosts "
                "file (for example the output of 'ssh-keyscan github.com', checked)"
            )
        return self

    @field_validator(
        "repos_dir", "workspace", "work_dir", "git_token_file", "git_ssh_key_file", "git_known_hosts_file",
        "webhook_secret_file",
    )
    @classmethod
    def _under_root(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        root = info.data.get("root", Path.cwd())
        return (root / value).resolve() if value else None

    @field_validator("storage_dir")
    @classmethod
    def _storage_under_work_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value:
            return (info.data.get("root", Path.cwd()) / value).resolve()
        work_dir = info.data.get("work_dir")
        return work_dir / STORAGE_SUBDIR if work_dir else None

    @field_validator("api_tokens_file")
    @classmethod
    def _tokens_under_work_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value:
            return (info.data.get("root", Path.cwd()) / value).resolve()
        work_dir = info.data.get("work_dir")
        return work_dir / API_TOKENS_SUBDIR if work_dir else None

    @field_validator("webserver_url")
    @classmethod
    def _url_without_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("webservers")
    @classmethod
    def _replica_source(cls, value: str | None) -> str | None:
        from meta_deployer.replicas import parse_source

        if value and value.strip():
            parse_source(value, DEFAULT_WEBSERVER_URL)  # ValueError: what would be valid
            return value.strip()
        return None

    # -- derived -----------------------------------------------------------------------
    @property
    def replica_source(self) -> "ReplicaSource":
        """Where the webserver replicas are (``META_DEPLOYER_WEBSERVERS``, else ``DAGSTER_WEBSERVER_URL`` alone)."""
        from meta_deployer.replicas import parse_source

        return parse_source(self.webservers, self.webserver_url)

    @property
    def storage_bucket(self) -> str | None:
        """The bucket when ``META_DEPLOYER_BUCKET`` is set: storage is then in S3 (dev, docker), else local."""
        return self.bucket if "bucket" in self.model_fields_set else None

    @property
    def state_backend(self) -> str:
        """``local`` or ``s3``: ``META_DEPLOYER_STATE``, else where the platform's storage root is (dev: local)."""
        if self.state:
            return self.state
        if self.platform == "ecs" or (self.platform == "docker" and self.storage_bucket):
            return "s3"
        return "local"

    @property
    def private_dirs(self) -> tuple[Path, ...]:
        """Folders no repo may use as its git source: the work area, the storage root, the instance."""
        dirs = [self.work_dir, self.storage_dir] + ([self.docker.dagster_home] if self.docker.dagster_home else [])
        return tuple(d for d in dirs if d is not None)

    # Folders inside the git-ignored work area -----------------------------
    @property
    def checkouts_dir(self) -> Path:
        return self.work_dir / "checkouts"

    @property
    def state_dir(self) -> Path:
        return self.work_dir / "state"

    @property
    def locks_dir(self) -> Path:
        return self.work_dir / "locks"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def config_repo_dir(self) -> Path:
        """The configuration repository's checkout (only with ``META_DEPLOYER_CONFIG_GIT_URL``)."""
        return self.work_dir / CONFIG_REPO_SUBDIR

    def checkout_path(self, name: str) -> Path:
        return self.checkouts_dir / name

    def git_token(self) -> str | None:
        """The git token from ``META_DEPLOYER_GIT_TOKEN_FILE``, if set (never logged)."""
        if self.git_token_file is None:
            return None
        try:
            return self.git_token_file.read_text().strip() or None
        except OSError as exc:
            raise SettingsError(f"META_DEPLOYER_GIT_TOKEN_FILE={self.git_token_file}: {exc.strerror}") from None

    def git_auth(self) -> GitAuth:
        """What git may authenticate with, and where (the token is read from its file now)."""
        return GitAuth(self.git_token(), self.git_token_hosts, self.git_ssh_key_file, self.git_known_hosts_file)


@dataclass(frozen=True)
class GitAuth:
    """The credentials git may use, and where: the token only for https to ``token_hosts``,
    the SSH key only with a pinned ``known_hosts`` file. Never logged (the token is not in repr)."""

    token: str | None = dc_field(default=None, repr=False)
    token_hosts: tuple[str, ...] = DEFAULT_GIT_TOKEN_HOSTS
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None

    @property
    def secrets(self) -> tuple[str | None, ...]:
        """The values to redact from every message."""
        return (self.token,)
