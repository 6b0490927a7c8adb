"""The dev platform's code servers: one supervised ``dagster api grpc`` per location version.

Each location version (``locations/<name>/<key>``, see ``meta_deployer.platforms.dev``) is served
by the entry point (``meta_deployer_runtime.entrypoint``) in the repo's own virtualenv, on a local
port, as ``dagster api grpc --host 127.0.0.1 --port P --module-name ... --fixed-server-id ID``. The
webserver and the daemon both reach it through a ``grpc_server`` workspace entry, so they share one
process per location, and a ``reloadWorkspace`` re-reads the workspace without restarting any
server (``ReloadCode`` is a no-op on a ``dagster api grpc`` server).

Who supervises: each server has a supervisor of its own
(``python -m meta_deployer_runtime.supervise``, standard library only, run by the same python), started
detached in a new session, so it outlives the deploy run that started it and the ``make dev`` it ran
under; it restarts the server when it dies. Its record, ``servers/<name>/<port>.json`` under the work
area, holds the supervisor's pid, the port and the version folder: :meth:`DevServers.adopt` (``make
dev``, ``meta-deployer dev-servers up``) keeps every server that still answers a gRPC ping and starts
again the ones that are gone (after a reboot), on their recorded port when it is free.

Nothing here knows about specs or the registry: the dev platform decides what runs where.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from meta_deployer import naming
from meta_deployer.platforms import location
from meta_deployer_runtime import contract

HOST = "127.0.0.1"
SUPERVISOR_MODULE = "meta_deployer_runtime.supervise"
#: Seconds a supervisor has to stop its server and exit before it is killed.
STOP_TIMEOUT_S = 20.0
POLL_S = 0.25


@dataclass(frozen=True)
class Server:
    """One supervised code server (the content of ``servers/<name>/<port>.json``)."""

    name: str
    port: int
    pid: int  # the supervisor's
    folder: str  # the location version it serves
    server_id: str
    started_at: float

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def workspace_entry(self) -> dict:
        return {"grpc_server": {"host": HOST, "port": self.port, "location_name": self.name}}


def grpc_ready(port: int, host: str = HOST, timeout: float = 5.0) -> bool:
    """True when a Dagster gRPC server answers a ping on ``host:port``."""
    from dagster._grpc.client import DagsterGrpcClient

    try:
        return DagsterGrpcClient(port=port, host=host).ping("meta-deployer").get("echo") == "meta-deployer"
    except Exception:  # any failure to connect or answer means "not ready"
        return False


def current_runs(port: int, host: str = HOST) -> list[str] | None:
    """Run ids executing under the code server on ``host:port``; None when it does not answer."""
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value

    try:
        return list(deserialize_value(DagsterGrpcClient(port=port, host=host).get_current_runs()).current_runs)
    except Exception:  # a server that is gone has no runs to wait for
        return None


def _new_port(taken: Iterable[int]) -> int:
    """A port nothing listens on and no recorded server holds (the kernel's choice)."""
    taken = set(taken)
    for _ in range(50):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port
    raise RuntimeError("no free local port for a code server")


def _alive(pid: int) -> bool:
    """True when ``pid`` is one of our supervisors (not a pid reused after a reboot)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return SUPERVISOR_MODULE.encode() in cmdline


class DevServers:
    """The supervised code servers under ``<work>/servers`` (see the module docstring)."""

    def __init__(self, work_dir: Path, logs_dir: Path):
        self.root = work_dir / "servers"
        self.logs_dir = logs_dir

    # -- records -----------------------------------------------------------------------
    def _lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".lock"), timeout=120)

    def _path(self, name: str, port: int) -> Path:
        return self.root / naming.validate_name(name) / f"{port}.json"

    def servers(self, name: str | None = None) -> list[Server]:
        """Every recorded server (of ``name``), oldest first."""
        folders = [self.root / naming.validate_name(name)] if name else sorted(p for p in self.root.glob("*") if p.is_dir())
        found = []
        for folder in folders:
            for path in folder.glob("*.json"):
                try:
                    found.append(Server(**json.loads(path.read_text())))
                except (OSError, ValueError, TypeError):
                    path.unlink(missing_ok=True)  # a torn record: what it described is adopted again
        return sorted(found, key=lambda s: (s.name, s.started_at))

    def names(self) -> list[str]:
        return sorted({s.name for s in self.servers()})

    def is_running(self, server: Server) -> bool:
        return _alive(server.pid)

    def healthy(self, server: Server) -> bool:
        return self.is_running(server) and grpc_ready(server.port)

    def status(self, server: Server) -> str:
        if not self.is_running(server):
            return "stopped (make dev starts it again)"
        return "running (healthy)" if grpc_ready(server.port) else "running (not answering gRPC)"

    def find(self, name: str, folder: Path, port: int | None = None) -> Server | None:
        """A running server of ``folder`` (on ``port``), if any."""
        for server in reversed(self.servers(name)):
            if server.folder == str(folder) and (port is None or server.port == port) and self.is_running(server):
                return server
        return None

    # -- start, wait, stop ---------------------------------------------------------------
    def start(self, name: str, folder: Path, port: int | None = None, log: Callable[[str], None] = print) -> Server:
        """Start a supervised server for the version ``folder`` on ``port`` (a new one when None or taken)."""
        python = folder / "venv" / "bin" / "python"
        dagster = folder / "venv" / "bin" / "dagster"
        server_id = f"{name}-{folder.name}"
        log_file = self.logs_dir / f"{naming.validate_name(name)}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        working_directory = json.loads((folder / "location.json").read_text())["working_directory"]
        # The repo's processes never see the deployer's own credentials.
        dropped = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
        env = {k: v for k, v in contract.without_deployer_secrets(os.environ).items() if k not in dropped}
        env[contract.LOCATION_CONFIG_ENV] = str(folder / "location.json")
        with self._lock():
            taken = {s.port for s in self.servers()}
            if port is None or port in taken or not location.port_free(port, (HOST,)):
                port = _new_port(taken)
            command = contract.entrypoint_command(HOST, port, server_id)
            command[0] = str(dagster)
            with open(log_file, "ab") as out:
                proc = subprocess.Popen(
                    [str(python), "-m", SUPERVISOR_MODULE, str(log_file), "--", *command],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=working_directory, env=env, start_new_session=True, close_fds=True,
                )
            # Until the child has exec'd, its /proc cmdline is ours: wait for it to be the supervisor.
            deadline = time.monotonic() + 30
            while not _alive(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            server = Server(name, port, proc.pid, str(folder), server_id, time.time())
            path = self._path(name, port)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(server)))
            os.replace(tmp, path)
        log(f"started the code server of {name} ({folder.name}) on {server.endpoint} (supervisor pid {proc.pid})")
        return server

    def wait_healthy(self, server: Server, timeout: float) -> str | None:
        """None once ``server`` answers gRPC; else why it did not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running(server):
                return "its supervisor exited"
            if grpc_ready(server.port):
                return None
            time.sleep(POLL_S)
        return f"it did not answer gRPC on {server.endpoint} within {timeout:.0f}s"

    def drain(self, server: Server, timeout: float, log: Callable[[str], None] = print) -> None:
        """Let the runs the server started finish (up to ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        runs = current_runs(server.port) if self.is_running(server) else None
        if runs:
            log(f"the old code server of {server.name} on {server.endpoint} still executes run(s) "
                f"{', '.join(runs)}; waiting up to {timeout:.0f}s")
        while runs and time.monotonic() < deadline:
            time.sleep(1.0)
            runs = current_runs(server.port)
        if runs:
            log(f"warning: stopping the code server on {server.endpoint} with run(s) still executing: {', '.join(runs)}")

    def stop(self, servers: Iterable[Server], log: Callable[[str], None] = print) -> None:
        """Stop ``servers`` (their supervisors stop them) and forget them; waits for them to exit."""
        servers = list(servers)
        for server in servers:
            if self.is_running(server):
                try:
                    os.kill(server.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for server in servers:
            while self.is_running(server) and time.monotonic() < deadline:
                _reap(server.pid)
                time.sleep(0.1)
            if self.is_running(server):
                try:
                    os.killpg(server.pid, signal.SIGKILL)  # its own session: the supervisor and its server
                except ProcessLookupError:
                    pass
            _reap(server.pid)
            self._path(server.name, server.port).unlink(missing_ok=True)
            log(f"stopped the code server of {server.name} on {server.endpoint}")

    def stop_all(self, log: Callable[[str], None] = print) -> list[Server]:
        servers = self.servers()
        self.stop(servers, log)
        return servers


def _reap(pid: int) -> None:
    """Collect ``pid`` if this process started it (else it would linger as a zombie that looks alive)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
