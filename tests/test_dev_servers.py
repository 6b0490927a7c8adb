"""The dev platform's supervised code servers (meta_deployer.platforms.devservers): restarted when the
server dies, adopted by `dev-servers up` while they run, started again (on their port) when they are
gone as after a reboot, stopped by `dev-servers down`. Real processes, real gRPC, no webserver."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from devkit import definitions_py
from meta_deployer import devrun
from meta_deployer import workspace as ws
from meta_deployer.pipeline import Deployer
from meta_deployer.platforms.devservers import DevServers, grpc_ready
from meta_deployer.spec import parse_spec


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait(predicate, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_a_server_is_restarted_adopted_and_started_again_after_a_reboot(project, git_remote):
    remote = git_remote(files={"definitions.py": definitions_py("one")})
    Deployer().deploy(parse_spec({"name": "team-a", "git_url": remote.url}, "test"))
    servers = DevServers(project.work, project.work / "logs")
    [server] = servers.servers("team-a")
    entry = ws.read_entries(project.workspace)["team-a"]["grpc_server"]
    assert entry == {"host": "127.0.0.1", "port": server.port, "location_name": "team-a"}

    # the server dies: its supervisor starts it again on the same port
    [child] = _children(server.pid)
    os.kill(child, signal.SIGKILL)
    assert _wait(lambda: _children(server.pid) not in ([], [child]) and grpc_ready(server.port))
    assert "starting it again" in (project.work / "logs" / "team-a.log").read_text()

    # make dev starting while it runs: adopted as it is (same supervisor), workspace.yaml untouched
    before = project.workspace_bytes()
    assert devrun.servers_up() == 1
    assert [s.pid for s in servers.servers("team-a")] == [server.pid]
    assert project.workspace_bytes() == before

    # a "reboot": supervisor and server killed without a word; the record stays behind
    os.killpg(server.pid, signal.SIGKILL)
    assert _wait(lambda: not grpc_ready(server.port), 30)
    assert "stopped" in servers.status(servers.servers("team-a")[0])
    devrun.servers_up()
    [again] = servers.servers("team-a")
    assert again.pid != server.pid and again.port == server.port and grpc_ready(again.port)
    assert project.workspace_bytes() == before  # same port: the entry did not change

    # make dev exiting: every server stopped, records gone
    assert devrun.servers_down() == 1
    assert servers.servers() == [] and not grpc_ready(again.port)
