"""Find the webserver replicas to reload (side effects: the Docker engine, or ECS through the gateway).

What ``META_DEPLOYER_WEBSERVERS`` means, and the ECS rules relied on, are in
``meta_deployer.replicas`` (pure); this module only asks the engine or ECS and hands
their answers to it. A replica list that cannot be read is reported, never raised:
the deploy has already switched, and the replicas read workspace.yaml when they start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meta_deployer.errors import MetaDeployerError
from meta_deployer.replicas import Replica, ReplicaSource, container_replica, engine_host, task_replicas
from meta_deployer.settings import Settings

if TYPE_CHECKING:
    from meta_deployer.platforms.aws.gateway import AwsGateway


@dataclass(frozen=True)
class Found:
    """The replicas found, and notes (warnings) on what was skipped or could not be read."""

    replicas: tuple[Replica, ...]
    notes: tuple[str, ...] = ()


def discover(settings: Settings, gateway: AwsGateway | None = None) -> Found:
    """The webserver replicas ``settings`` points at; an unreadable source gives none and a warning."""
    source = settings.replica_source
    if source.kind == "urls":
        return Found(tuple(Replica(url, url) for url in source.urls))
    try:
        if source.kind == "docker":
            found = _docker(settings, source)
        else:
            found = _ecs(settings, source, gateway)
    except (MetaDeployerError, OSError) as exc:
        return Found((), (f"warning: could not list the webservers ({source.describe()}): {exc}; none was reloaded",))
    if not found.replicas:
        return Found((), (*found.notes, f"warning: no running webserver found ({source.describe()}); none was reloaded"))
    return found


def _docker(settings: Settings, source: ReplicaSource) -> Found:
    from meta_deployer.platforms.images import docker_client

    env = dict(settings.env)
    client = docker_client(env)
    try:
        import docker

        try:
            containers = client.containers.list(filters={"label": list(source.labels), "status": "running"})
        except docker.errors.DockerException as exc:
            raise MetaDeployerError(f"the Docker engine refused to list containers: {exc}") from exc
        host = engine_host(env.get("DOCKER_HOST"))
        replicas, notes = [], []
        for container in containers:
            attrs = container.attrs
            found = container_replica(
                container.name,
                attrs.get("Config", {}).get("Labels") or {},
                attrs.get("HostConfig", {}).get("NetworkMode", ""),
                attrs.get("NetworkSettings", {}).get("Ports"),
                host,
                settings.webserver_port,
            )
            if isinstance(found, Replica):
                replicas.append(found)
            else:
                notes.append(f"warning: {found}")
        return Found(tuple(sorted(replicas, key=lambda r: r.name)), tuple(notes))
    finally:
        client.close()


def _ecs(settings: Settings, source: ReplicaSource, gateway: AwsGateway | None) -> Found:
    from meta_deployer.platforms.aws.gateway import AwsGateway

    gw = gateway or AwsGateway(retry_mode=settings.ecs.retry_mode, max_attempts=settings.ecs.max_attempts)
    tasks = gw.service_tasks(source.cluster, source.service)
    replicas, notes = task_replicas(source.service, tasks, settings.webserver_port)
    return Found(tuple(replicas), tuple(notes))
