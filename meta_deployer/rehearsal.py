"""``make platform-local``: the production topology, rehearsed on one Docker engine with real parts.

    md-webserver-1, md-webserver-2   dagster-webserver replicas (ports DAGSTER_PORT, DAGSTER_PORT+1)
    md-daemon                        dagster-daemon: sensors, the run queue, DockerRunLauncher
    md-deployer                      the meta_deployer location's own gRPC code server
    md-s3                            the storage bucket's S3 endpoint (a moto server standing in for S3)
    Postgres                         the instance's storage (Debian's postgresql on the host)
    volume md-workspace              workspace.yaml, shared (EFS in production): read-only for the
                                     webservers and the daemon, read-write for deploy runs

Every container runs the **platform image** (``platforms/platform_image.py``: this project with the
webserver, the daemon and ``dagster-docker``, built from the working tree's files, plus moto's server
here; tagged by their content, so an unchanged tree builds nothing) on the host network. Deploy runs are launched by the daemon into containers
of their own (``platform/local/dagster.yaml``); they reach the engine over TCP (``--docker-host``,
standing in for a remote build host) and have no host path and no socket mounted. The sensor reads
``repos/*/config.yml`` from the configuration repository (``META_DEPLOYER_CONFIG_GIT_URL``).

``up`` is idempotent: a running container whose configuration is unchanged is left alone, one
whose configuration changed is replaced. ``down`` removes the containers and keeps the volumes,
the database and the bucket (``purge`` removes the volume too). Deployment records and leases
live in the bucket (``META_DEPLOYER_STATE=s3``): a deploy run shares no disk with anything but
the workspace volume.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from meta_deployer.errors import MetaDeployerError
from meta_deployer.model import Log
from meta_deployer.platforms import platform_image

#: Every container and volume of the rehearsal carries this label (``down`` finds them by it).
LABEL = "meta-deployer.platform"
LABEL_ROLE = "meta-deployer.role"
LABEL_PORT = "meta-deployer.port"  # where the replica discovery (docker:<labels>) reaches a webserver
LABEL_CONFIG = "meta-deployer.config"
PROJECT = "local"
IMAGE_REPOSITORY = "md-platform"
WORKSPACE_VOLUME = "md-workspace"
WORKSPACE_MOUNT, HOME = "/workspace", "/opt/dagster/home"
SELF_PORT = 4266
S3_PORT = 4570
DEFAULT_POSTGRES_URL = "postgresql://dagster:dagster@127.0.0.1:5432/dagster"
#: dagster-postgres installs psycopg2, and SQLAlchemy 2.1 takes psycopg (3) for a bare postgresql:// URL.
PSYCOPG2_SCHEME = "postgresql+psycopg2://"
#: Deployer settings that describe this machine, not the platform: never passed into it.
HOST_SETTINGS = frozenset({
    "META_DEPLOYER_ROOT", "META_DEPLOYER_WORK_DIR", "META_DEPLOYER_WORKSPACE", "META_DEPLOYER_REPOS_DIR",
    "META_DEPLOYER_STORAGE_DIR", "META_DEPLOYER_DAGSTER_URL", "META_DEPLOYER_GIT_TOKEN_FILE",
    "META_DEPLOYER_GIT_SSH_KEY_FILE", "META_DEPLOYER_GIT_KNOWN_HOSTS_FILE", "META_DEPLOYER_TEST_REGISTRY",
})
PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_CONFIG = PROJECT_ROOT / "platform" / "local" / "dagster.yaml"


class RehearsalError(MetaDeployerError):
    """The rehearsal could not be brought up (a missing part, a container that does not start)."""


@dataclass(frozen=True)
class Topology:
    """What ``up`` starts, from the settings a user gives the Make target."""

    config_git_url: str
    postgres_url: str
    engine_tcp: str
    port: int = 3000
    replicas: int = 2
    registry: str | None = None
    base_image: str = "python:3.12-slim"
    bucket: str = "dagster-storage"
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{S3_PORT}"

    def webserver_ports(self) -> list[int]:
        return [self.port + i for i in range(self.replicas)]

    def webserver_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.webserver_ports()]

    def instance_env(self) -> dict[str, str]:
        """What every process that opens the instance needs (webservers, daemon, runs)."""
        url = self.postgres_url
        if url.startswith(("postgresql://", "postgres://")):
            url = PSYCOPG2_SCHEME + url.split("://", 1)[1]
        return {
            "DAGSTER_HOME": HOME,
            "DAGSTER_POSTGRES_URL": url,
            "DOCKER_HOST": self.engine_tcp,
            "META_DEPLOYER_BUCKET": self.bucket,
            "AWS_ENDPOINT_URL": self.s3_url,
            "AWS_ACCESS_KEY_ID": "rehearsal",
            "AWS_SECRET_ACCESS_KEY": "rehearsal",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def deployer_env(self, image: str) -> dict[str, str]:
        """The deployer's settings: its code server's and (through its container context) its runs'."""
        # No DAGSTER_HOME: a code server and its runs get the instance from the daemon, and the docker
        # platform would bind a DAGSTER_HOME into every location (a host path: none here).
        instance = {k: v for k, v in self.instance_env().items() if k != "DAGSTER_HOME"}
        env = {
            **instance,
            "META_DEPLOYER_PLATFORM": "docker",
            "META_DEPLOYER_STATE": "s3",
            # The S3 stand-in's (fake) credentials reach the locations too: they fetch their code there.
            "META_DEPLOYER_DOCKER_LOCATION_ENV": "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_DEFAULT_REGION",
            "META_DEPLOYER_ROOT": "/opt/meta_deployer",
            "META_DEPLOYER_WORKSPACE": f"{WORKSPACE_MOUNT}/workspace.yaml",
            "META_DEPLOYER_WORK_DIR": "/tmp/meta_deployer",
            "META_DEPLOYER_CONFIG_GIT_URL": self.config_git_url,
            "META_DEPLOYER_SELF_SERVER": f"localhost:{SELF_PORT}",
            "META_DEPLOYER_INSTANCE_PACKAGES": "dagster-aws,dagster-postgres,dagster-docker",
            "META_DEPLOYER_BASE_IMAGE": self.base_image,
            "DAGSTER_WEBSERVER_URL": self.webserver_urls()[0],
            "META_DEPLOYER_WEBSERVERS": f"docker:{LABEL}={PROJECT},{LABEL_ROLE}=webserver",
            "DAGSTER_CURRENT_IMAGE": image,
            **({"META_DEPLOYER_REGISTRY": self.registry} if self.registry else {}),
        }
        env = {**self.extra_env, **env}
        volumes = {WORKSPACE_VOLUME: {"bind": WORKSPACE_MOUNT, "mode": "rw"}}
        context = {"docker": {"env_vars": [f"{k}={v}" for k, v in sorted(env.items())], "container_kwargs": {"volumes": volumes}}}
        return {**env, "DAGSTER_CONTAINER_CONTEXT": json.dumps(context, sort_keys=True)}


def passed_through(env: Mapping[str, str]) -> dict[str, str]:
    """The ``META_DEPLOYER_*`` settings of the caller that the platform's deployer gets too (ports,
    timeouts, ...): every one but those naming this machine's files and the topology's own."""
    return {k: v for k, v in env.items() if k.startswith("META_DEPLOYER_") and k not in HOST_SETTINGS}


# -- the platform image ------------------------------------------------------------------------


def project_files(root: Path = PROJECT_ROOT) -> list[str]:
    """The project's files as git sees them (the platform image's own list)."""
    return platform_image.project_files(root)


def dockerfile(base_image: str) -> str:
    """The platform image's Dockerfile, with moto's server for the rehearsal's S3 stand-in."""
    return platform_image.platform_dockerfile(base_image, with_moto=True)


def build_context(base_image: str, root: Path = PROJECT_ROOT) -> tuple[bytes, str]:
    """The image's build context (a tar) and its content tag: the platform image's
    (``platforms/platform_image.py``), with this rehearsal's instance and moto's server."""
    context = platform_image.platform_context(base_image, INSTANCE_CONFIG.read_text(), with_moto=True, root=root)
    return context.tar, context.tag


def ensure_image(client: Any, topology: Topology, log: Log) -> str:
    """The platform image's reference; built only when the project's files changed."""
    import docker

    context, tag = build_context(topology.base_image)
    ref = f"{IMAGE_REPOSITORY}:{tag}"
    try:
        client.images.get(ref)
        log(f"platform image {ref} is up to date")
        return ref
    except docker.errors.ImageNotFound:
        pass
    log(f"building the platform image {ref} (a few minutes the first time)")
    lines: list[str] = []
    for chunk in client.api.build(fileobj=io.BytesIO(context), custom_context=True, tag=ref, rm=True,
                                  network_mode="host", decode=True):
        if "stream" in chunk:
            lines.append(chunk["stream"].rstrip())
        if "error" in chunk:
            raise RehearsalError(f"building {ref} failed: {chunk['error']}\n" + "\n".join(lines[-20:]))
    return ref


# -- containers -------------------------------------------------------------------------------


def _spec(topology: Topology, image: str) -> dict[str, dict[str, Any]]:
    """Every container: name -> create() arguments (without the common ones)."""
    ro = {WORKSPACE_VOLUME: {"bind": WORKSPACE_MOUNT, "mode": "ro"}}
    workspace = f"{WORKSPACE_MOUNT}/workspace.yaml"
    instance = topology.instance_env()
    specs: dict[str, dict[str, Any]] = {
        "md-s3": {
            "role": "s3", "port": S3_PORT, "environment": {},
            "command": ["moto_server", "-H", "127.0.0.1", "-p", str(S3_PORT)],
        },
        "md-deployer": {
            "role": "deployer", "port": SELF_PORT, "environment": topology.deployer_env(image),
            "command": ["dagster", "api", "grpc", "-m", "meta_deployer.definitions", "-h", "127.0.0.1",
                        "-p", str(SELF_PORT)],
            "volumes": ro,
        },
        "md-daemon": {
            "role": "daemon", "environment": instance,
            "command": ["dagster-daemon", "run", "-w", workspace], "volumes": ro,
        },
    }
    for i, port in enumerate(topology.webserver_ports(), start=1):
        specs[f"md-webserver-{i}"] = {
            "role": "webserver", "port": port, "environment": instance,
            "command": ["dagster-webserver", "-h", "127.0.0.1", "-p", str(port), "-w", workspace],
            "volumes": ro,
        }
    return specs


def _config_hash(image: str, spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps([image, spec], sort_keys=True).encode()).hexdigest()[:16]


def _run(client: Any, name: str, image: str, spec: Mapping[str, Any], log: Log) -> bool:
    """Start ``name`` unless it runs with this configuration already; True when (re)started."""
    import docker

    config = _config_hash(image, spec)
    try:
        current = client.containers.get(name)
        if current.labels.get(LABEL_CONFIG) == config and current.status == "running":
            return False
        current.remove(force=True)
    except docker.errors.NotFound:
        pass
    labels = {LABEL: PROJECT, LABEL_ROLE: spec["role"], LABEL_CONFIG: config}
    if "port" in spec:
        labels[LABEL_PORT] = str(spec["port"])
    client.containers.run(
        image, spec["command"], name=name, detach=True, network_mode="host", labels=labels,
        environment=dict(spec["environment"]), volumes=dict(spec.get("volumes", {})),
        restart_policy={"Name": "unless-stopped"}, init=True,
    )
    log(f"started {name}")
    return True


def _wait_http(url: str, what: str, timeout: float = 180.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RehearsalError(f"{what} did not answer at {url} within {timeout:.0f}s (see `docker logs` of its container)")


def _ensure_bucket(topology: Topology) -> None:
    import boto3
    import botocore.exceptions

    s3 = boto3.client("s3", endpoint_url=topology.s3_url, region_name="us-east-1",
                      aws_access_key_id="rehearsal", aws_secret_access_key="rehearsal")
    try:
        s3.head_bucket(Bucket=topology.bucket)
    except botocore.exceptions.ClientError:
        s3.create_bucket(Bucket=topology.bucket)


def up(topology: Topology, env: Mapping[str, str], log: Log) -> list[str]:
    """Bring the rehearsal up (idempotent); returns the webserver URLs."""
    from meta_deployer.platforms.images import docker_client

    client = docker_client(env)
    image = ensure_image(client, topology, log)
    if not client.volumes.list(filters={"name": f"^{WORKSPACE_VOLUME}$"}):
        client.volumes.create(WORKSPACE_VOLUME, labels={LABEL: PROJECT})
    specs = _spec(topology, image)
    _run(client, "md-s3", image, specs.pop("md-s3"), log)
    _wait_http(topology.s3_url, "the S3 stand-in (md-s3)")
    _ensure_bucket(topology)
    # The instance's tables (once, before three processes open it at the same time), and the first
    # workspace.yaml: the deployer's own location, and whatever is deployed already.
    client.containers.run(
        image, ["sh", "-c", "dagster instance migrate >/dev/null && meta-deployer render-workspace"],
        remove=True, network_mode="host",
        environment={**specs["md-deployer"]["environment"], "DAGSTER_HOME": HOME},
        volumes={WORKSPACE_VOLUME: {"bind": WORKSPACE_MOUNT, "mode": "rw"}},
    )
    for name, spec in specs.items():
        _run(client, name, image, spec, log)
    for url in topology.webserver_urls():
        _wait_http(f"{url}/server_info", f"the webserver at {url}")
    log("platform-local is up: " + ", ".join(topology.webserver_urls()))
    return topology.webserver_urls()


def down(env: Mapping[str, str], purge: bool, log: Log) -> None:
    """Remove the rehearsal's containers (the volumes too with ``purge``); the database is kept."""
    from meta_deployer.platforms.images import docker_client

    client = docker_client(env)
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}={PROJECT}"}):
        container.remove(force=True)
        log(f"removed {container.name}")
    if purge:
        for volume in client.volumes.list(filters={"label": f"{LABEL}={PROJECT}"}):
            volume.remove(force=True)
            log(f"removed volume {volume.name}")
