"""What every platform gives a location: its environment and how its code server starts (pure).

One builder for the dev, docker and ecs platforms, on the code-server contract of
``meta_deployer_runtime.contract`` (which the location entry point reads on the
other side):

- :func:`location_env`: the spec's own ``environment``, then what the deployer
  injects (repo name, prefix, read grants and the storage: a bucket, or a local
  storage folder), then the code source and working directory for the entry point;
- :func:`grpc_command` / :func:`location_args`: the plain ``dagster api grpc``
  command of a templated image (the platforms serve the entry point instead);
- :func:`container_workdir`: the folder the entry point runs in inside an image;
- :func:`server_id`: the ``--fixed-server-id`` of a deployed version (docker and ecs).

Injected names come last, so a spec can never override them.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping

from meta_deployer.errors import SpecError
from meta_deployer.spec import RepoSpec
from meta_deployer_runtime import contract
from meta_deployer_runtime.contract import (  # re-exported: the platforms' one import for the contract
    CONTAINER_PORT,
    entrypoint_command,
    health_command,
    validate_command,
)

__all__ = [
    "CONTAINER_PORT",
    "code_source_env",
    "container_workdir",
    "entrypoint_command",
    "grpc_command",
    "health_command",
    "location_args",
    "location_env",
    "server_id",
    "storage_env",
    "validate_command",
]


def _code_source(spec: RepoSpec) -> tuple[str, str]:
    source = spec.code_source
    if source is None:
        raise SpecError(
            f"repos/{spec.name}/config.yml",
            [("python_file", "the spec names no code source; set python_file, module_name or package_name")],
        )
    return source


def location_args(spec: RepoSpec) -> list[str]:
    """``dagster`` CLI arguments naming the spec's code source, relative to the image's WORKDIR."""
    kind, value = _code_source(spec)
    wd = spec.working_directory or "."
    if kind == "python_file":
        return ["--python-file", posixpath.normpath(posixpath.join(wd, value)), "--working-directory", wd]
    flag = "--module-name" if kind == "module_name" else "--package-name"
    return [flag, value, "--working-directory", wd]


def grpc_command(spec: RepoSpec, host: str = "0.0.0.0", port: int = CONTAINER_PORT) -> list[str]:
    """The plain command serving the spec's location: ``dagster api grpc --host H --port P ...``."""
    return ["dagster", "api", "grpc", "--host", host, "--port", str(port), *location_args(spec)]


def container_workdir(image_workdir: str | None, spec: RepoSpec) -> str:
    """The absolute folder the entry point runs in: the image's WORKDIR plus the spec's working_directory."""
    return posixpath.normpath(posixpath.join(image_workdir or "/", spec.working_directory or "."))


def storage_env(
    spec: RepoSpec, *, bucket: str | None, storage_dir: str | None = None, endpoint_url: str | None = None
) -> dict[str, str]:
    """The repo's name, prefix and grants, and its storage: ``bucket`` (S3) or else ``storage_dir``."""
    env = {contract.ENV_REPO: spec.name, contract.ENV_PREFIX: spec.prefix}
    if spec.access.read:
        env[contract.ENV_READ_ACCESS] = ",".join(spec.access.read)
    if bucket:
        env[contract.ENV_BUCKET] = bucket
        if endpoint_url:
            env["AWS_ENDPOINT_URL"] = endpoint_url
    elif storage_dir:
        env[contract.ENV_STORAGE_DIR] = str(storage_dir)
    return env


def code_source_env(spec: RepoSpec, working_directory: str | None = None) -> dict[str, str]:
    """The entry point's code source, and (where the platform cannot set the process's working
    directory, as on ECS) the working directory relative to the image's WORKDIR."""
    kind, value = _code_source(spec)
    env = {contract.CODE_SOURCE_ENV: f"{kind}:{value}"}
    if working_directory is not None:
        env[contract.WORKING_DIRECTORY_ENV] = working_directory
    return env


def location_env(spec: RepoSpec, storage: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The spec's environment, then ``storage`` (from :func:`storage_env`) and ``extra``: injected last, so they win."""
    return {**{e.name: e.value for e in spec.environment}, **storage, **(extra or {})}


def server_id(spec: RepoSpec, commit: str, image: str, settings_fingerprint: str) -> str:
    """The code server identity of one deployed version: ``<name>-<commit12>-<hash16>``.

    Derived only from what the deploy fingerprint covers (the image, which pins the build, the
    commit, the spec and the platform's settings): every replica and every restart of one version
    reports the same id to ``GetServerId``, a new version a new one, and an unchanged deploy renders
    the same command (so it changes nothing). Never a timestamp or a random value.
    """
    data = json.dumps([spec.name, commit, image, spec.content_hash(), settings_fingerprint])
    return f"{spec.name}-{commit[:12]}-{hashlib.sha256(data.encode()).hexdigest()[:16]}"
