"""The code-server contract between the deployer and a deployed location (pure, stdlib only).

The deployer's platforms start every code server the same way, and the
location entry point reads what they inject. Both sides import the names from
here, so a platform serves exactly what the entry point expects:

- the command: ``dagster api grpc --host H --port P --module-name meta_deployer_runtime.entrypoint``
  ``--fixed-server-id ID`` (the version's deploy fingerprint: one identity for all its replicas);
- the health check: ``dagster api grpc-health-check -p P``;
- the validation command: ``meta_deployer_runtime.validate``, which serves the same entry point with
  ``dagster api grpc`` and asks it over gRPC for its repositories (every supported release answers);
- mounted code: ``META_DEPLOYER_CODE_ARCHIVE`` and ``_CODE_SHA256`` (``meta_deployer_runtime.code``);
- the environment: the code source (``META_DEPLOYER_CODE_SOURCE``), the working directory, the repo
  name and its storage settings (``META_DEPLOYER_REPO``, ``_PREFIX``, ``_BUCKET`` or ``_STORAGE_DIR``,
  ``_READ_ACCESS``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

#: The port a code server listens on inside its container.
CONTAINER_PORT = 4000
#: The location entry point module (``dagster api grpc --module-name``).
ENTRYPOINT_MODULE = "meta_deployer_runtime.entrypoint"

# -- environment names ---------------------------------------------------------
#: A JSON file describing the location (the dev platform).
LOCATION_CONFIG_ENV = "META_DEPLOYER_LOCATION_CONFIG"
#: ``<kind>:<value>``, e.g. ``module_name:my_project.definitions`` (the container platforms).
CODE_SOURCE_ENV = "META_DEPLOYER_CODE_SOURCE"
#: The working directory, relative to the server's current directory.
WORKING_DIRECTORY_ENV = "META_DEPLOYER_WORKING_DIRECTORY"
#: Repo name; the IO manager writes only under ``repos/<name>/``.
ENV_REPO = "META_DEPLOYER_REPO"
#: The repo's prefix, ``repos/<name>`` (checked against the name).
ENV_PREFIX = "META_DEPLOYER_PREFIX"
#: S3 bucket; set when S3 storage is used (takes precedence over a directory).
ENV_BUCKET = "META_DEPLOYER_BUCKET"
#: Local storage root holding ``repos/<name>/...``; set when no bucket is used.
ENV_STORAGE_DIR = "META_DEPLOYER_STORAGE_DIR"
#: Comma-separated repo names the spec's ``access.read`` grants.
ENV_READ_ACCESS = "META_DEPLOYER_READ_ACCESS"
#: Mounted code (dynamic repository mounting): where the commit's code archive is, ``s3://<bucket>/<key>``
#: or an absolute local path (``repos/<name>/code/<commit>.tar.gz`` of the storage root) ...
ENV_CODE_ARCHIVE = "META_DEPLOYER_CODE_ARCHIVE"
#: ... its sha256 (hex), checked before anything of it is unpacked ...
ENV_CODE_SHA256 = "META_DEPLOYER_CODE_SHA256"
#: ... and the writable folder it is unpacked into (default: ``<tempdir>/meta-deployer-code``).
ENV_CODE_DIR = "META_DEPLOYER_CODE_DIR"
#: The storage layout of code archives, relative to the storage root.
CODE_ARCHIVE_FOLDER = "code"


def code_archive_key(name: str, commit: str) -> str:
    """``repos/<name>/code/<commit>.tar.gz``: under the repo's own prefix, so only that repo reads it."""
    problem = name_problem(name)
    if problem:
        raise ValueError(f"repo name {problem}")
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        raise ValueError(f"{commit!r} is not a full git commit id")
    return f"repos/{name}/{CODE_ARCHIVE_FOLDER}/{commit}.tar.gz"


#: Where the deployer's work area is (``META_DEPLOYER_ROOT`` / ``META_DEPLOYER_WORK_DIR``): the
#: instance's compute log manager defaults to its ``storage`` folder, as the deployer does.
ROOT_ENV = "META_DEPLOYER_ROOT"
WORK_DIR_ENV = "META_DEPLOYER_WORK_DIR"
DEFAULT_WORK_DIR = ".meta_deployer"

# -- repo names (the deployer's naming module is the authority; this is the same rule) --
#: Location name of the deployer itself in workspace.yaml.
SELF_LOCATION = "meta_deployer"
MAX_NAME_LENGTH = 40
RESERVED_NAMES = frozenset({"shared", "system", "temp", "meta-deployer"})
NAME_PATTERN = re.compile(r"^[a-z](?:[a-z0-9-]*[a-z0-9])?\Z")


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid repo name, or None."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.match(name):
        return f"{name!r} is not a repo name (a DNS label of at most {MAX_NAME_LENGTH} characters)"
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved"
    return None


#: Variables that configure the deployer itself (its git credentials, its API and webhook secrets,
#: its configuration repository): a location never needs them, so the entry point drops them before
#: a repo's code loads, and the dev platform never passes them to a repo's processes.
DEPLOYER_ONLY_PREFIXES = ("META_DEPLOYER_GIT_", "META_DEPLOYER_API_", "META_DEPLOYER_WEBHOOK_", "META_DEPLOYER_CONFIG_GIT_")


def without_deployer_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the deployer-only variables (see :data:`DEPLOYER_ONLY_PREFIXES`)."""
    return {k: v for k, v in env.items() if not k.startswith(DEPLOYER_ONLY_PREFIXES)}


def entrypoint_command(host: str = "0.0.0.0", port: int = CONTAINER_PORT, server_id: str | None = None) -> list[str]:
    """``dagster api grpc`` serving the location entry point.

    ``server_id`` (``--fixed-server-id``) is the identity the server reports to ``GetServerId``: the
    webserver polls it and reloads the location when it changes, so every replica of one deployed
    version must report the same id (the platforms pass the version's deploy fingerprint).
    """
    command = ["dagster", "api", "grpc", "--host", host, "--port", str(port), "--module-name", ENTRYPOINT_MODULE]
    if server_id:
        command += ["--fixed-server-id", server_id]
    return command


def health_command(port: int = CONTAINER_PORT) -> list[str]:
    """The container health check: ``dagster api grpc-health-check -p <port>``."""
    return ["dagster", "api", "grpc-health-check", "-p", str(port)]


#: The location validator (``meta_deployer_runtime.validate``): starts the code server, asks it over gRPC.
VALIDATE_MODULE = "meta_deployer_runtime.validate"


def validate_command() -> list[str]:
    """Loads the location's definitions through the entry point; exits non-zero when they fail.

    The validator runs with the python that runs ``dagster`` in the image (read from the ``dagster``
    script's ``#!`` line; ``python3`` when there is none), since an image's ``python`` on PATH may not be it.
    """
    script = (
        'd=$(command -v dagster) && py=$(sed -n "1s/^#!//p" "$d"); '
        f"exec ${{py:-python3}} -m {VALIDATE_MODULE}"
    )
    return ["sh", "-c", script]


def default_storage_dir(env: Mapping[str, str] | None = None) -> str:
    """``META_DEPLOYER_STORAGE_DIR``, else ``<root>/<work dir>/storage`` as the deployer resolves it."""
    env = os.environ if env is None else env
    root = env.get(ROOT_ENV) or os.getcwd()
    if env.get(ENV_STORAGE_DIR):
        return os.path.abspath(os.path.join(root, env[ENV_STORAGE_DIR]))
    return os.path.abspath(os.path.join(root, env.get(WORK_DIR_ENV) or DEFAULT_WORK_DIR, "storage"))
