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
- :func:`server_id`: the ``--fixed-server-id`` of a deployed version (docker and ecs);
- :func:`validation_outcome`: what the location validator reported (``meta_deployer_runtime.validate``),
  as the Dagster release it found (checked against the supported window) or the error of the stage
  that failed.

Injected names come last, so a spec can never override them.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import socket
from collections.abc import Mapping

from meta_deployer import versions
from meta_deployer.errors import SpecError, ValidationFailed
from meta_deployer.spec import RepoSpec
from meta_deployer_runtime import contract
from meta_deployer_runtime.contract import (  # re-exported: the platforms' one import for the contract
    CONTAINER_PORT,
    VALIDATE_MODULE,
    entrypoint_command,
    health_command,
    validate_command,
)

__all__ = [
    "CONTAINER_PORT",
    "VALIDATE_MODULE",
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
    "validation_outcome",
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


def mounted_code_env(spec: RepoSpec, archive_uri: str, sha256: str, code_dir: str | None = None) -> dict[str, str]:
    """What the entry point needs to serve mounted code: the archive, its sha256, the working directory."""
    env = {
        contract.ENV_CODE_ARCHIVE: archive_uri,
        contract.ENV_CODE_SHA256: sha256,
        contract.WORKING_DIRECTORY_ENV: spec.working_directory or ".",
    }
    if code_dir:
        env[contract.ENV_CODE_DIR] = code_dir
    return env


def validating_env() -> dict[str, str]:
    """What every validation adds to the location's environment: that it validates, and the supported
    minors, which the validator checks before it starts a code server (stage ``version``)."""
    return {"META_DEPLOYER_VALIDATING": "1", **versions.window_env()}


def is_validator_line(line: str) -> bool:
    """True for the validator's report lines (``META_DEPLOYER_DAGSTER_VERSION=``, ``META_DEPLOYER_VALIDATION=``),
    as a builder's or a task's log shows them among other lines."""
    from meta_deployer_runtime.validate import RESULT_PREFIX, VERSION_PREFIX

    return line.strip().startswith((VERSION_PREFIX, RESULT_PREFIX))


def validation_outcome(name: str, where: str, output: str, exit_code: int, tail: str = "") -> str:
    """The dagster release a validated location runs, from the validator's ``output``.

    Raises UnsupportedDagsterVersion when the release (or its absence) is outside the window, whatever
    else failed; else ValidationFailed saying which stage failed: the user's definitions (``load``),
    or the code server itself (``server``). ``where`` names the artifact (``its virtualenv``,
    ``the image``); ``tail`` is the output to show when the validator could not report at all.
    """
    from meta_deployer_runtime.validate import parse_output

    version, result = parse_output(output)
    if version is None and result is None:
        raise ValidationFailed(
            f"the validator of {name} did not run in {where} (exit {exit_code}): is Python with dagster "
            f"installed there?\n{tail}"
        )
    versions.check_supported(f"{name} ({where})", version)
    if result is not None and result.get("stage") == "version":  # the validator was told a narrower window
        from meta_deployer.errors import UnsupportedDagsterVersion

        raise UnsupportedDagsterVersion(f"{versions.unsupported_message(f'{name} ({where})', version)}\n{result.get('error', '')}")
    keep = "this version was not deployed; the previous version, if any, keeps serving"
    if result is None:
        raise ValidationFailed(f"validating {name} (dagster {version}) stopped before it reported (exit {exit_code}); {keep}:\n{tail}")
    if result.get("stage") == "load":
        raise ValidationFailed(
            f"the definitions of {name} failed to load in its code server (dagster {version}), so {keep}. "
            f"Fix the code and push a new commit:\n{result.get('error', '')}"
        )
    if result.get("stage") != "ok":
        raise ValidationFailed(
            f"the code server of {name} (dagster {version}) failed before it could load the definitions "
            f"(a server or environment problem, not necessarily the repo's code); {keep}:\n{result.get('error', '')}"
        )
    return version


def port_free(port: int, hosts: tuple[str, ...] = ("127.0.0.1",)) -> bool:
    """Whether a code server could listen on ``port`` on each of ``hosts`` now (a bind test)."""
    for host in hosts:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True
