"""Which webserver replicas to reload after a change (pure: parsing and reading answers, no I/O).

``META_DEPLOYER_WEBSERVERS`` says how to find the replicas; every one of them is
reloaded on its own address (``meta_deployer.discovery`` lists them, the webserver
module calls them):

    (unset)                      the one DAGSTER_WEBSERVER_URL (one webserver: dev, today's behaviour)
    http://a:3000,http://b:3001  a fixed list of URLs
    docker:<label>[,<label>...]  the running containers on the engine (DOCKER_HOST) carrying every
                                 label (``key`` or ``key=value``), e.g. docker:meta-deployer.role=webserver
    ecs:<cluster>/<service>      the RUNNING tasks of that ECS service, each at its private IPv4 address

Where a docker replica listens: containers run with host networking (the engine has no
bridge in CI and in the local rehearsal), so the address is the engine's host (127.0.0.1
for a local socket, the host of a ``tcp://`` DOCKER_HOST) and the port is the container's
``meta-deployer.port`` label, else ``META_DEPLOYER_WEBSERVER_PORT``. A bridged container
is reached on the host port published for that port. The port is a label, not read from
the container's command line, because a label is an explicit contract and a command is not.

ECS rules relied on (each tested in tests/test_replicas.py):

- ListTasks (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ListTasks.html):
  ``desiredStatus`` filters on the status ECS *wants* (``RUNNING`` or ``STOPPED``; ``PENDING``
  returns nothing, since only ``lastStatus`` is ever PENDING); ``serviceName`` filters on the
  service; ``startedBy`` must be the only filter when used, so it is never sent; results are
  paginated (``nextToken``), so every page is read. A task whose desired status is RUNNING may
  still be starting: only ``lastStatus == RUNNING`` tasks are called (the others read
  workspace.yaml when they start).
- DescribeTasks (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html):
  ``tasks`` is "a list of up to 100 task IDs or full ARN entries", so ARNs go in batches of 100.
- Task.attachments (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html,
  API_Attachment.html): an ``awsvpc`` task (every Fargate task) has an ``ElasticNetworkInterface``
  attachment whose ``details`` include the private IPv4 address (``privateIPv4Address``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

#: DescribeTasks takes at most this many task ARNs per call (see the module docstring).
DESCRIBE_TASKS_MAX = 100
#: How many replicas are reloaded at once.
MAX_PARALLEL_RELOADS = 8
#: The label that gives a docker replica's port (host networking).
PORT_LABEL = "meta-deployer.port"
#: ECS cluster and service names: letters, digits, hyphens and underscores, 1-255 characters.
_ECS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}\Z")
#: A docker label filter: a key (reverse-DNS style) with an optional ``=value``.
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(=[^,\s]*)?\Z")


@dataclass(frozen=True)
class Replica:
    """One webserver replica: a name to report it by, and the URL its GraphQL endpoint is under."""

    name: str
    url: str


@dataclass(frozen=True)
class ReplicaSource:
    """How to find the replicas, parsed from ``META_DEPLOYER_WEBSERVERS``."""

    kind: Literal["urls", "docker", "ecs"]
    urls: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    cluster: str = ""
    service: str = ""

    def describe(self) -> str:
        """How the source reads in messages."""
        if self.kind == "docker":
            return f"docker containers labelled {','.join(self.labels)}"
        if self.kind == "ecs":
            return f"ECS service {self.service} in cluster {self.cluster}"
        return ", ".join(self.urls)


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL"
    if parts.username or parts.password:
        return f"{url!r} carries a user; give the webserver's address only"
    return None


def parse_source(value: str | None, default_url: str) -> ReplicaSource:
    """Parse ``META_DEPLOYER_WEBSERVERS`` (None or empty: ``default_url`` alone); ValueError says what is valid."""
    value = (value or "").strip()
    if not value:
        return ReplicaSource("urls", urls=(default_url.rstrip("/"),))
    if value.startswith("docker:"):
        labels = tuple(label.strip() for label in value[len("docker:"):].split(",") if label.strip())
        bad = [label for label in labels if not _LABEL.match(label)]
        if not labels or bad:
            raise ValueError(
                f"docker: needs one or more labels `key` or `key=value`, comma-separated "
                f"(e.g. docker:meta-deployer.role=webserver){'; not a label: ' + ', '.join(bad) if bad else ''}"
            )
        return ReplicaSource("docker", labels=labels)
    if value.startswith("ecs:"):
        cluster, _, service = value[len("ecs:"):].partition("/")
        if not (_ECS_NAME.match(cluster) and _ECS_NAME.match(service)):
            raise ValueError("ecs: needs a cluster and a service name, ecs:<cluster>/<service> (e.g. ecs:dagster/webserver)")
        return ReplicaSource("ecs", cluster=cluster, service=service)
    urls = tuple(url.strip().rstrip("/") for url in value.split(",") if url.strip())
    problems = [p for p in map(_url_problem, urls) if p]
    if not urls or problems:
        raise ValueError(
            "use comma-separated webserver URLs (http://10.0.1.5:3000,http://10.0.1.6:3000), "
            f"docker:<label>, or ecs:<cluster>/<service>{'; ' + '; '.join(problems) if problems else ''}"
        )
    return ReplicaSource("urls", urls=tuple(dict.fromkeys(urls)))


# -- docker ---------------------------------------------------------------------------


def engine_host(docker_host: str | None) -> str:
    """The address of the machine the engine runs on: 127.0.0.1 for a local socket, else DOCKER_HOST's host."""
    if docker_host and docker_host.startswith(("tcp://", "http://", "https://", "ssh://")):
        host = urlsplit(docker_host).hostname
        if host:
            return host
    return "127.0.0.1"


def _http_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def container_replica(
    name: str, labels: Mapping[str, str], network_mode: str, ports: Mapping[str, Any] | None, host: str, default_port: int,
) -> Replica | str:
    """The replica a webserver container is, from its inspect data; or why it cannot be reached (a string)."""
    label = labels.get(PORT_LABEL)
    if label is not None and not (label.isdigit() and 0 < int(label) < 65536):
        return f"webserver container {name}: label {PORT_LABEL}={label!r} is not a port"
    port = int(label) if label is not None else default_port
    if network_mode == "host":
        return Replica(name, f"http://{_http_host(host)}:{port}")
    bindings = (ports or {}).get(f"{port}/tcp") or []
    if not bindings:
        return (
            f"webserver container {name} ({network_mode} network) publishes no host port for {port}/tcp; "
            f"run it with host networking and label {PORT_LABEL}=<port>, or publish the port"
        )
    bound_ip = bindings[0].get("HostIp") or ""
    address = host if bound_ip in ("", "0.0.0.0", "::") else bound_ip  # noqa: S104 - reading, not binding
    return Replica(name, f"http://{_http_host(address)}:{bindings[0]['HostPort']}")


# -- ECS -------------------------------------------------------------------------------


def list_tasks_params(cluster: str, service: str) -> dict[str, str]:
    """ListTasks parameters for the service's tasks that ECS keeps running (no ``startedBy``: see the rules)."""
    return {"cluster": cluster, "serviceName": service, "desiredStatus": "RUNNING"}


def describe_batches(arns: Iterable[str]) -> list[list[str]]:
    """Task ARNs in DescribeTasks-sized batches (at most :data:`DESCRIBE_TASKS_MAX` each)."""
    arns = list(arns)
    return [arns[i : i + DESCRIBE_TASKS_MAX] for i in range(0, len(arns), DESCRIBE_TASKS_MAX)]


def task_private_ip(task: Mapping[str, Any]) -> str | None:
    """The private IPv4 address of an awsvpc task's network interface, or None (not attached yet, not awsvpc)."""
    for attachment in task.get("attachments") or []:
        if attachment.get("type") != "ElasticNetworkInterface":
            continue
        for detail in attachment.get("details") or []:
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return str(detail["value"])
    return None


def task_replicas(service: str, tasks: Iterable[Mapping[str, Any]], port: int) -> tuple[list[Replica], list[str]]:
    """The RUNNING tasks as replicas, sorted by name, and a note for each task that cannot be called."""
    replicas, notes = [], []
    for task in tasks:
        task_id = str(task.get("taskArn", "")).rsplit("/", 1)[-1]
        name = f"{service}/{task_id}"
        if task.get("lastStatus") != "RUNNING":
            notes.append(f"webserver task {name} is {task.get('lastStatus')}, not RUNNING yet; it reads workspace.yaml when it starts")
            continue
        ip = task_private_ip(task)
        if ip is None:
            notes.append(f"warning: webserver task {name} has no private IPv4 address (not an awsvpc task?); not reloaded")
            continue
        replicas.append(Replica(name, f"http://{ip}:{port}"))
    return sorted(replicas, key=lambda r: r.name), notes
