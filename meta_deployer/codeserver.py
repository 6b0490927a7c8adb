"""What a code server runs in its container, on every container platform (pure).

The docker and ecs platforms run the same images the same way: ``dagster api
grpc`` serving the location entry point (``meta_deployer.entrypoint``), which
loads the repo's code source named in the environment, applies the injected
settings and gives the repo the prefix-enforcing IO manager when it sets none.
Keeping the command, the environment and the health check here, once, means
a task definition serves exactly what the image was validated with.
"""

from __future__ import annotations

import posixpath

from meta_deployer.errors import SpecError
from meta_deployer.location import CODE_SOURCE_ENV
from meta_deployer.spec import RepoSpec

#: The port a code server listens on inside its container.
CONTAINER_PORT = 4000


def location_args(spec: RepoSpec) -> list[str]:
    """``dagster`` CLI arguments naming the spec's code source, relative to the image's WORKDIR."""
    source = spec.code_source
    if source is None:
        raise SpecError(
            f"repos/{spec.name}/config.yml",
            [("python_file", "the spec names no code source; set python_file, module_name or package_name")],
        )
    kind, value = source
    wd = spec.working_directory or "."
    if kind == "python_file":
        return ["--python-file", posixpath.normpath(posixpath.join(wd, value)), "--working-directory", wd]
    if kind == "module_name":
        return ["--module-name", value, "--working-directory", wd]
    return ["--package-name", value, "--working-directory", wd]


def grpc_command(spec: RepoSpec, host: str = "0.0.0.0", port: int = CONTAINER_PORT) -> list[str]:
    """The container command serving the spec's location: ``dagster api grpc --host H --port P ...``."""
    return ["dagster", "api", "grpc", "--host", host, "--port", str(port), *location_args(spec)]


#: The location entry point inside the runtime layer (see ``meta_deployer.location``).
ENTRYPOINT_MODULE = "meta_deployer.entrypoint"


def entrypoint_env(spec: RepoSpec) -> dict[str, str]:
    """The environment naming the spec's code source to the location entry point."""
    source = spec.code_source
    if source is None:
        location_args(spec)  # raises, naming the missing field
    assert source is not None
    return {CODE_SOURCE_ENV: f"{source[0]}:{source[1]}"}


def entrypoint_command(host: str = "0.0.0.0", port: int = CONTAINER_PORT) -> list[str]:
    """``dagster api grpc`` serving the location entry point: the repo's definitions, given the
    prefix-enforcing IO manager when they set none (``meta_deployer.location``)."""
    return ["dagster", "api", "grpc", "--host", host, "--port", str(port), "--module-name", ENTRYPOINT_MODULE]


def container_workdir(image_workdir: str | None, spec: RepoSpec) -> str:
    """The absolute folder the entry point runs in: the image's WORKDIR plus the spec's working_directory."""
    return posixpath.normpath(posixpath.join(image_workdir or "/", spec.working_directory or "."))


def health_command(port: int = CONTAINER_PORT) -> list[str]:
    """The container health check: ``dagster api grpc-health-check -p <port>``."""
    return ["dagster", "api", "grpc-health-check", "-p", str(port)]


def validate_command(spec: RepoSpec) -> list[str]:
    """Loads the spec's definitions through the entry point; exits non-zero when they fail to load."""
    location_args(spec)  # a spec without a code source fails here, naming the field
    return ["dagster", "definitions", "validate", "--module-name", ENTRYPOINT_MODULE]


def injected_env(spec: RepoSpec, bucket: str) -> dict[str, str]:
    """The spec's environment plus what the deployer injects (repo, bucket, prefix)."""
    env = {e.name: e.value for e in spec.environment}
    env.update(
        {
            "META_DEPLOYER_REPO": spec.name,
            "META_DEPLOYER_BUCKET": bucket,
            "META_DEPLOYER_PREFIX": spec.prefix,
        }
    )
    if spec.access.read:
        env["META_DEPLOYER_READ_ACCESS"] = ",".join(spec.access.read)
    return env
