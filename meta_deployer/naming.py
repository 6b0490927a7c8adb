"""Every name derived from a repo name, in one place (pure).

A repo name is a DNS label: it becomes a Dagster location name, a Cloud Map
host name, an S3 prefix, a container name and several AWS resource names.
It is validated once, here, before it reaches a shell, a path or an AWS call.
Names that AWS limits more tightly than a repo name can be are shortened with
a short hash of the full name, so two long repo names can never collide.
"""

from __future__ import annotations

import hashlib
import re

#: Longest repo name accepted: ``dagster-repo-<name>`` must fit an IAM role
#: name (64) and ``<name>-service`` a DNS label (63) without shortening.
MAX_NAME_LENGTH = 40
#: The platform's own services in the cluster and their log groups (``/dagster/platform/<short>``);
#: ``platform/<short>`` names them where a repo name is expected (``repo-logs REPO_NAME=platform/webserver``).
PLATFORM_NAME = "platform"
PLATFORM_SERVICES = {"webserver": "dagster-webserver", "daemon": "dagster-daemon", "deployer": "meta-deployer"}
#: Names that would collide with the bucket's own top-level layout, or with the platform's ECS services
#: (a repo's service is ``<name>``), its image repository (``dagster/platform``) and the base images'
#: repository (``dagster/base``, platforms/images.py).
RESERVED_NAMES = frozenset({"shared", "system", "temp", "meta-deployer", "base", PLATFORM_NAME, *PLATFORM_SERVICES.values()})
NAME_PATTERN = re.compile(r"^[a-z](?:[a-z0-9-]*[a-z0-9])?\Z")

#: Tag put on every AWS resource the deployer owns; state is read back through it.
REPO_TAG_KEY = "meta-deployer:repo"
#: Run tag used by the tag concurrency limit in dagster.yaml (one deploy per repo).
RUN_TAG_KEY = "meta_deployer/repo"
#: Location name of the deployer itself in workspace.yaml.
SELF_LOCATION = "meta_deployer"

_IAM_ROLE_MAX = 64
_TARGET_GROUP_MAX = 32
_ECS_NAME_MAX = 255


def name_problem(name: object) -> str | None:
    """Return why ``name`` is not a valid repo name, or None when it is."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
    if not NAME_PATTERN.match(name):
        return (
            f"{name!r} is not a DNS label: use lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-' (for example 'team-sales')"
        )
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved; choose another name (reserved: {', '.join(sorted(RESERVED_NAMES))})"
    return None


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid repo name, else raise ValueError saying why."""
    problem = name_problem(name)
    if problem:
        raise ValueError(f"repo name {problem}")
    assert isinstance(name, str)
    return name


def fit(name: str, limit: int) -> str:
    """Shorten ``name`` to ``limit`` characters, keeping it unique with a hash suffix."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-_')}-{digest}"


#: A location's own name inside its repo (config.yml ``locations[].name``): a DNS label too.
MAX_LOCATION_LABEL = 63


def location_label_problem(label: object) -> str | None:
    """Why ``label`` is not a valid location name inside a repo (``locations[].name``), or None."""
    if not isinstance(label, str) or not label:
        return "must be a non-empty string"
    if len(label) > MAX_LOCATION_LABEL:
        return f"is {len(label)} characters long; at most {MAX_LOCATION_LABEL} are allowed"
    if not NAME_PATTERN.match(label):
        return (
            f"{label!r} is not a DNS label: use lowercase letters, digits and '-', starting with a letter "
            "and not ending with '-' (for example 'ingest')"
        )
    return None


def location_name(repo: str, label: str) -> str:
    """The deployed name of location ``label`` of repo ``repo``: ``<repo>-<label>``, shortened with a
    hash of the full name when longer than a repo name may be (so two never collide)."""
    validate_name(repo)
    problem = location_label_problem(label)
    if problem:
        raise ValueError(f"location name {problem}")
    full = f"{repo}-{label}"
    if len(full) > MAX_NAME_LENGTH:
        digest = hashlib.sha256(full.encode()).hexdigest()[:8]
        full = f"{full[: MAX_NAME_LENGTH - 9].rstrip('-')}-{digest}"
    return validate_name(full)


def label_from(text: str) -> str:
    """A location label made from a name found in a repository (``location_name`` of a
    dagster_cloud.yaml, a project folder): lowercase, ``_``/``.``/spaces as ``-``, other characters
    dropped; '' when nothing usable is left."""
    label = re.sub(r"[^a-z0-9-]", "", re.sub(r"[_.\s]+", "-", text.strip().lower()))
    label = re.sub(r"-{2,}", "-", label).strip("-")
    label = label.lstrip("0123456789-")
    return label[:MAX_LOCATION_LABEL].rstrip("-")


def s3_prefix(name: str) -> str:
    """The repo's storage prefix inside the bucket, without a trailing slash."""
    return f"repos/{validate_name(name)}"


def container_name(name: str) -> str:
    """Docker container name of the repo's code server."""
    return f"dagster-repo-{validate_name(name)}"


#: The ECR repository of the base images (its name is reserved for repos).
BASE_REPOSITORY = "dagster/base"


def ecr_repository(name: str) -> str:
    """ECR repository holding the repo's images (``base``: the base images', ``dagster/base``)."""
    if name == "base":
        return BASE_REPOSITORY
    return f"dagster/{validate_name(name)}"


def task_family(name: str) -> str:
    """ECS task definition family."""
    return fit(f"dagster-repo-{validate_name(name)}", _ECS_NAME_MAX)


def task_role(name: str) -> str:
    """IAM task role name; only this role may touch the repo's prefix."""
    return fit(f"dagster-repo-{validate_name(name)}", _IAM_ROLE_MAX)


def execution_role(name: str) -> str:
    """IAM task execution role name: pulls only the repo's image, writes only its log group and
    reads only its own and the shared secrets.

    ``dagster-exec-<name>``, not ``dagster-repo-<name>-exec``: the latter is the task role of a
    repo called ``<name>-exec``, so two repos could share one role. Task roles all start with
    ``dagster-repo-`` and execution roles with ``dagster-exec-``, so the two never meet.
    """
    return fit(f"dagster-exec-{validate_name(name)}", _IAM_ROLE_MAX)


def ecs_service(name: str) -> str:
    """ECS service name."""
    return fit(validate_name(name), _ECS_NAME_MAX)


def cloud_map_service(name: str) -> str:
    """Cloud Map service name; the host is ``<this>.<namespace>``."""
    return f"{validate_name(name)}-service"


def log_group(name: str) -> str:
    """CloudWatch log group of the repo's code server and runs."""
    return f"/dagster/repos/{validate_name(name)}"


def platform_log_group(short: str) -> str:
    """CloudWatch log group of one platform service (``webserver``, ``daemon``, ``deployer``)."""
    if short not in PLATFORM_SERVICES:
        raise ValueError(f"{short!r} is not a platform service; use one of {', '.join(PLATFORM_SERVICES)}")
    return f"/dagster/{PLATFORM_NAME}/{short}"


def platform_target(value: str) -> str | None:
    """``webserver`` for ``platform/webserver`` (and daemon, deployer); None for anything else."""
    prefix, _, short = value.partition("/")
    return short if prefix == PLATFORM_NAME and short in PLATFORM_SERVICES else None


def target_group(name: str) -> str:
    """ELBv2 target group name (at most 32 characters)."""
    return fit(f"dagster-{validate_name(name)}", _TARGET_GROUP_MAX)
