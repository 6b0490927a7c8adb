"""Every webserver replica is reloaded: finding them (URLs, docker labels, ECS tasks) and calling each one.

Real parts: the replicas are real HTTP servers answering the GraphQL mutations (in this
process, or in containers on the real engine), ECS is a moto server over HTTP. The ECS
rules the requests rely on are written in meta_deployer/replicas.py with their sources
and checked here against our requests, since moto accepts what AWS rejects.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import botocore.session
import pytest

from conftest import free_port, wait_for_port
from meta_deployer import discovery, replicas, webserver
from meta_deployer.errors import SettingsError
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.replicas import Replica
from meta_deployer.settings import Settings


def workspace_answer(location: str, status: str = "LOADED") -> dict:
    return {"data": {"reloadWorkspace": {"__typename": "Workspace", "locationEntries": [
        {"name": location, "loadStatus": status, "locationOrLoadError": {"__typename": "RepositoryLocation"}}
    ]}}}


class GraphQLReplica:
    """A real HTTP server standing in for one webserver replica; it records the mutations it gets."""

    def __init__(self, location: str, known: set[str] | None = None, broken: str | None = None):
        self.calls: list[str] = []
        self.statuses: dict[str, str] = {location: "LOADED"}  # what the LocationStatuses query sees
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["query"]
                if "workspaceOrError" in query:
                    entries = [{"name": n, "loadStatus": st, "locationOrLoadError": {"__typename": "RepositoryLocation",
                                "repositories": []}} for n, st in replica.statuses.items()]
                    return self._send({"data": {"workspaceOrError": {"__typename": "Workspace", "locationEntries": entries}}})
                op = "reloadRepositoryLocation" if "reloadRepositoryLocation" in query else "reloadWorkspace"
                replica.calls.append(op)
                if op == "reloadRepositoryLocation" and location not in (known or set()):
                    answer = {"data": {op: {"__typename": "RepositoryLocationNotFound", "message": "not found"}}}
                elif op == "reloadRepositoryLocation":
                    answer = {"data": {op: {"__typename": "WorkspaceLocationEntry", "name": location,
                                            "loadStatus": "LOADED", "locationOrLoadError": None}}}
                elif broken:
                    answer = {"data": {op: {"__typename": "Workspace", "locationEntries": [
                        {"name": location, "loadStatus": "LOADED",
                         "locationOrLoadError": {"__typename": "PythonError", "message": broken}}]}}}
                else:
                    answer = workspace_answer(location)
                self._send(answer)

            def _send(self, answer):
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def two_replicas():
    pair = [GraphQLReplica("sales"), GraphQLReplica("sales", known={"sales"})]
    yield pair
    for r in pair:
        r.stop()


# -- META_DEPLOYER_WEBSERVERS ---------------------------------------------------------------


def test_the_default_is_the_one_webserver_url():
    source = Settings.from_env({"DAGSTER_WEBSERVER_URL": "http://web:3300/"}).replica_source
    assert (source.kind, source.urls) == ("urls", ("http://web:3300",))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://a:3000, http://b:3001/,http://a:3000", replicas.ReplicaSource("urls", urls=("http://a:3000", "http://b:3001"))),
        ("docker:meta-deployer.role=webserver,env", replicas.ReplicaSource("docker", labels=("meta-deployer.role=webserver", "env"))),
        ("ecs:dagster/webserver", replicas.ReplicaSource("ecs", cluster="dagster", service="webserver")),
    ],
)
def test_sources_parse(value, expected):
    assert Settings.from_env({"META_DEPLOYER_WEBSERVERS": value}).replica_source == expected


@pytest.mark.parametrize("value", ["ecs:/web", "ecs:c/w/x", "docker:a b", "ftp://web", "web:3000"])
def test_a_bad_source_is_refused_naming_the_variable(value):
    with pytest.raises(SettingsError, match="META_DEPLOYER_WEBSERVERS"):
        Settings.from_env({"META_DEPLOYER_WEBSERVERS": value})


# -- the ECS rules, against our requests -----------------------------------------------------


def test_list_tasks_asks_for_the_services_tasks_ecs_keeps_running():
    """ListTasks: desiredStatus RUNNING (PENDING is never a desired status), serviceName, and no startedBy
    (which must be the only filter when used). The parameters must also fit the API's model."""
    params = replicas.list_tasks_params("dagster", "webserver")
    assert params == {"cluster": "dagster", "serviceName": "webserver", "desiredStatus": "RUNNING"}
    model = botocore.session.get_session().get_service_model("ecs").operation_model("ListTasks").input_shape
    assert set(params) <= set(model.members)
    assert params["desiredStatus"] in model.members["desiredStatus"].enum
    assert "startedBy" not in params


@pytest.mark.parametrize("count", [0, 1, 100, 101, 250])
def test_describe_tasks_gets_at_most_100_arns_a_call(count):
    arns = [f"arn:aws:ecs:us-east-1:123456789012:task/dagster/{i:032x}" for i in range(count)]
    batches = replicas.describe_batches(arns)
    assert all(1 <= len(b) <= 100 for b in batches)
    assert [a for b in batches for a in b] == arns
    assert len(batches) == -(-count // 100)


def test_a_tasks_address_is_its_eni_private_ipv4_and_only_running_tasks_are_called():
    def task(task_id, status, ip=None, kind="ElasticNetworkInterface"):
        details = [{"name": "subnetId", "value": "subnet-1"}] + ([{"name": "privateIPv4Address", "value": ip}] if ip else [])
        return {"taskArn": f"arn:aws:ecs:us-east-1:1:task/dagster/{task_id}", "lastStatus": status,
                "attachments": [{"type": kind, "status": "ATTACHED", "details": details}]}

    found, notes = replicas.task_replicas(
        "web",
        [task("b", "RUNNING", "10.0.1.6"), task("a", "RUNNING", "10.0.1.5"), task("c", "PENDING", "10.0.1.7"),
         task("d", "RUNNING"), task("e", "RUNNING", "10.0.1.9", kind="Service Connect")],
        3000,
    )
    assert found == [Replica("web/a", "http://10.0.1.5:3000"), Replica("web/b", "http://10.0.1.6:3000")]
    assert any("web/c is PENDING" in n for n in notes)
    assert any("web/d has no private IPv4" in n for n in notes) and any("web/e has no private IPv4" in n for n in notes)


# -- docker containers: where each one listens --------------------------------------------


def test_a_host_network_container_is_reached_on_the_engines_host_and_its_port_label():
    label = {replicas.PORT_LABEL: "3301"}
    assert replicas.container_replica("web-2", label, "host", None, "127.0.0.1", 3000) == Replica("web-2", "http://127.0.0.1:3301")
    assert replicas.container_replica("web-1", {}, "host", None, "build.internal", 3000) == Replica("web-1", "http://build.internal:3000")
    bridged = {"3000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "43000"}]}
    assert replicas.container_replica("web-3", {}, "bridge", bridged, "127.0.0.1", 3000) == Replica("web-3", "http://127.0.0.1:43000")
    assert "publishes no host port" in replicas.container_replica("web-4", {}, "bridge", {}, "127.0.0.1", 3000)
    assert "is not a port" in replicas.container_replica("web-5", {replicas.PORT_LABEL: "x"}, "host", None, "h", 3000)
    assert replicas.engine_host("unix:///var/lib/md-docker/docker.sock") == "127.0.0.1"
    assert replicas.engine_host("tcp://10.0.0.8:2375") == "10.0.0.8"


# -- reloading every replica ------------------------------------------------------------------


def test_both_replicas_are_reloaded_each_on_its_own_address(two_replicas):
    a, b = two_replicas
    result = webserver.reload_replicas([Replica("web-1", a.url), Replica("web-2", b.url)], timeout=10)
    assert result.reached == ("web-1", "web-2") and result.unreachable == ()
    assert a.calls == ["reloadWorkspace"] and b.calls == ["reloadWorkspace"]
    assert [r.result.locations for r in result.replicas] == [{"sales": "LOADED"}, {"sales": "LOADED"}]


def test_a_location_reload_falls_back_to_the_workspace_on_the_replica_that_lacks_it(two_replicas):
    a, b = two_replicas  # a does not know "sales" yet, b does
    result = webserver.reload_replicas([Replica("web-1", a.url), Replica("web-2", b.url)], location="sales", timeout=10)
    assert a.calls == ["reloadRepositoryLocation", "reloadWorkspace"]
    assert b.calls == ["reloadRepositoryLocation"]
    assert [r.result.message for r in result.replicas] == ["workspace reloaded", "location sales reloaded"]


def test_a_replica_that_does_not_answer_is_a_warning_naming_it_and_the_other_is_still_reloaded(
    two_replicas, project, monkeypatch
):
    from meta_deployer.pipeline import Deployer

    a, _ = two_replicas
    down = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("META_DEPLOYER_WEBSERVERS", f"{down},{a.url}")
    lines: list[str] = []
    result = Deployer().reload(True, lines.append)
    assert result is not None and result.unreachable == (down,) and result.reached == (a.url,)
    assert a.calls == ["reloadWorkspace"]
    assert lines == [
        f"warning: webserver {down}: no webserver answered at {down} (nothing listens there); "
        "it will read workspace.yaml when it starts",
        f"webserver {a.url}: workspace reloaded",
    ]


def test_a_location_error_is_a_warning_naming_the_replica(project, monkeypatch):
    broken = GraphQLReplica("sales", broken="ModuleNotFoundError: no module named sales")
    try:
        from meta_deployer.pipeline import Deployer

        monkeypatch.setenv("META_DEPLOYER_WEBSERVERS", broken.url)
        lines: list[str] = []
        Deployer().reload(True, lines.append)
        assert f"warning: location sales reports ERROR: ModuleNotFoundError: no module named sales on webserver {broken.url}" in lines
    finally:
        broken.stop()


def test_nothing_changed_calls_no_replica(two_replicas, project, monkeypatch):
    from meta_deployer.pipeline import Deployer

    monkeypatch.setenv("META_DEPLOYER_WEBSERVERS", ",".join(r.url for r in two_replicas))
    lines: list[str] = []
    assert Deployer().reload(False, lines.append) is None
    assert lines == ["nothing changed; no reload needed"] and all(r.calls == [] for r in two_replicas)


def test_list_repos_statuses_name_the_replica_that_disagrees(two_replicas, capsys):
    """list-repos shows one status when the replicas agree, each replica's when they do not."""
    from meta_deployer.cli import _live_statuses

    a, b = two_replicas
    b.statuses = {}
    settings = Settings.from_env({"META_DEPLOYER_WEBSERVERS": f"{a.url},{b.url}"})
    assert _live_statuses(settings) == {"sales": {"status": f"{a.url}: LOADED; {b.url}: not in webserver"}}
    b.statuses = {"sales": "LOADED"}
    assert _live_statuses(settings) == {"sales": {"status": "LOADED"}}
    down = f"http://127.0.0.1:{free_port()}"
    assert _live_statuses(Settings.from_env({"META_DEPLOYER_WEBSERVERS": f"{down},{a.url}"})) == {"sales": {"status": "LOADED"}}
    assert f"warning: webserver {down} did not answer" in capsys.readouterr().err
    assert _live_statuses(Settings.from_env({"META_DEPLOYER_WEBSERVERS": down})) is None


# -- ECS discovery against a moto server -------------------------------------------------------


@pytest.fixture
def ecs_webservers(moto_factory, monkeypatch):
    """A moto server whose tasks stay RUNNING when described (moto advances a task's state at each
    DescribeTasks by default), a VPC, a cluster, a webserver task definition (awsvpc) and its service."""
    from test_ecs_support import make_network

    server = moto_factory()
    request = urllib.request.Request(
        f"{server.url}/moto-api/state-manager/set-transition", method="POST",
        data=json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10_000}}).encode(),
    )
    urllib.request.urlopen(request).read()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    net = make_network()
    ecs = boto3.client("ecs")
    for cluster in ("dagster", "other"):
        ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family="dagster-webserver", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "webserver", "image": "dagster-webserver:1", "memory": 512, "portMappings": [{"containerPort": 3000}]}],
    )
    network = {"awsvpcConfiguration": {"subnets": net["META_DEPLOYER_SUBNETS"].split(","),
                                       "securityGroups": [net["META_DEPLOYER_SECURITY_GROUPS"]]}}
    ecs.create_service(cluster="dagster", serviceName="webserver", taskDefinition="dagster-webserver", desiredCount=2,
                       launchType="FARGATE", networkConfiguration=network)

    def run(count: int, cluster: str = "dagster") -> list[dict]:
        # moto's CreateService starts no task: RunTask stands in for the service's tasks (group service:<name>, as ECS names them).
        return ecs.run_task(cluster=cluster, taskDefinition="dagster-webserver", count=count, launchType="FARGATE",
                            group="service:webserver", networkConfiguration=network)["tasks"]

    return ecs, run


def eni_ip(task: dict) -> str:
    (eni,) = [a for a in task["attachments"] if a["type"] == "ElasticNetworkInterface"]
    return next(d["value"] for d in eni["details"] if d["name"] == "privateIPv4Address")


def test_ecs_discovery_finds_each_running_task_at_its_private_ip(ecs_webservers):
    ecs, run = ecs_webservers
    running = run(2)
    stopped = run(1)[0]
    ecs.stop_task(cluster="dagster", task=stopped["taskArn"], reason="replaced")
    run(1, cluster="other")  # another cluster's task is never listed
    settings = Settings.from_env({**os.environ, "META_DEPLOYER_WEBSERVERS": "ecs:dagster/webserver",
                                  "META_DEPLOYER_WEBSERVER_PORT": "3300"})
    found = discovery.discover(settings)
    expected = sorted(
        (Replica(f"webserver/{t['taskArn'].rsplit('/', 1)[-1]}", f"http://{eni_ip(t)}:3300") for t in running),
        key=lambda r: r.name,
    )
    assert found.replicas == tuple(expected) and found.notes == ()
    # (moto picks a random private address, not one of the subnet's as AWS does)
    assert all(ipaddress.ip_address(r.url.split("//")[1].rsplit(":", 1)[0]).is_private for r in found.replicas)


def test_ecs_discovery_describes_tasks_100_at_a_time(ecs_webservers):
    _, run = ecs_webservers
    for _ in range(10):
        run(10)  # RunTask starts at most 10 tasks a call
    run(1)
    settings = Settings.from_env({**os.environ, "META_DEPLOYER_WEBSERVERS": "ecs:dagster/webserver"})
    gateway = AwsGateway()
    found = discovery.discover(settings, gateway)
    assert len(found.replicas) == 101 and len({r.url for r in found.replicas}) == 101
    assert [c.operation for c in gateway.calls].count("DescribeTasks") == 2


def test_an_unreadable_ecs_source_is_a_warning_not_a_failure(ecs_webservers):
    settings = Settings.from_env({**os.environ, "META_DEPLOYER_WEBSERVERS": "ecs:missing/webserver"})
    found = discovery.discover(settings)
    assert found.replicas == ()
    assert len(found.notes) >= 1 and all(n.startswith("warning: ") for n in found.notes)
    assert "ECS service webserver in cluster missing" in found.notes[-1]


# -- docker discovery against the real engine ---------------------------------------------------

#: A GraphQL stand-in for dagster-webserver, run inside python:3.12-slim: it answers reloadWorkspace
#: with one location named after its replica, so the answer proves which container was called.
STUB = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, name = int(sys.argv[1]), sys.argv[2]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"data": {"reloadWorkspace": {"__typename": "Workspace", "locationEntries": [
            {"name": name, "loadStatus": "LOADED", "locationOrLoadError": {"__typename": "RepositoryLocation"}}]}}}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def test_docker_discovery_finds_and_reloads_each_labelled_container():
    from dockerkit import engine_env

    from meta_deployer.platforms.images import docker_client

    engine_env()  # skips on a laptop without an engine, fails in CI
    client = docker_client(dict(os.environ))
    run_id = uuid.uuid4().hex[:8]  # keeps other tests' containers out of the selector
    labels = {"meta-deployer.role": "webserver", "meta-deployer.test": run_id}
    containers = []
    try:
        for i in (1, 2):
            port = free_port()
            containers.append(client.containers.run(
                "python:3.12-slim", ["python", "-c", STUB, str(port), f"web-{i}"], detach=True, network_mode="host",
                name=f"md-test-web-{run_id}-{i}", labels={**labels, replicas.PORT_LABEL: str(port)},
            ))
            wait_for_port(port, timeout=60)
        # A stopped container with the same labels is not a replica.
        stopped = client.containers.create("python:3.12-slim", ["true"], labels=labels, name=f"md-test-web-{run_id}-off")
        containers.append(stopped)
        settings = Settings.from_env({**os.environ, "META_DEPLOYER_WEBSERVERS": f"docker:meta-deployer.role=webserver,meta-deployer.test={run_id}"})
        found = discovery.discover(settings)
        assert [r.name for r in found.replicas] == [f"md-test-web-{run_id}-1", f"md-test-web-{run_id}-2"]
        ports = [c.labels[replicas.PORT_LABEL] for c in containers[:2]]
        assert [r.url for r in found.replicas] == [f"http://127.0.0.1:{p}" for p in ports]
        result = webserver.reload_replicas(found.replicas, timeout=30)
        assert [r.result.locations for r in result.replicas] == [{"web-1": "LOADED"}, {"web-2": "LOADED"}]
        containers[0].stop(timeout=1)  # one replica goes away: a warning naming it, the other still reloaded
        result = webserver.reload_replicas(found.replicas, timeout=30)
        assert result.unreachable == (f"md-test-web-{run_id}-1",) and result.reached == (f"md-test-web-{run_id}-2",)
        assert result.lines()[0].startswith(f"warning: webserver md-test-web-{run_id}-1 (http://127.0.0.1:{ports[0]})")
    finally:
        for container in containers:
            container.remove(force=True)
        client.close()
