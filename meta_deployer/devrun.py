"""``make dev``: the dev platform's code servers, then Dagster's webserver and daemon on workspace.yaml.

``meta-deployer dev`` (what ``make dev`` runs):

1. re-renders workspace.yaml from the deployment records;
2. starts or adopts one code server per location deployed on the dev platform
   (:func:`servers_up`, also ``meta-deployer dev-servers up``): a server that still answers is kept,
   one that is gone (a reboot) is started again from the deployed version, on its recorded port when
   that is free (else on a new one, and the record and workspace.yaml follow); servers of repos no
   longer deployed are stopped;
3. runs ``dagster-webserver`` and ``dagster-daemon run`` on workspace.yaml itself. Not ``dagster dev``:
   without ``--use-legacy-code-server-behavior`` it serves a frozen copy of the workspace, so a repo
   added later would never appear; with it, the webserver and the daemon each start their own code
   server for every location. Every repo entry is a ``grpc_server`` entry, so both share the
   supervised servers and a ``reloadWorkspace`` starts or restarts none;
4. when either exits, or on Ctrl-C / SIGTERM, stops both and then every dev code server
   (:func:`servers_down`): without Dagster they serve nobody. A deploy run outside ``make dev`` leaves
   its new server running, so the next ``make dev`` adopts it at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from meta_deployer.model import Log
from meta_deployer.settings import Settings

STOP_TIMEOUT_S = 30.0


def _print(line: str) -> None:
    print(line, flush=True)


def servers_up(settings: Settings | None = None, log: Log = _print) -> int:
    """Start or adopt the code server of every location deployed on the dev platform; the count."""
    from meta_deployer.platforms.dev import DevPlatform
    from meta_deployer.registry import Registry

    settings = settings or Settings.from_env()
    registry = Registry(settings)
    platform = DevPlatform(settings)
    records = {name: asdict(r) for name, r in registry.all().items() if r.platform == DevPlatform.name}
    stale = [s for s in platform.servers.servers() if s.name not in records]
    if stale:
        platform.servers.stop(stale, log)
    moved = platform.adopt(records, log)
    for name, entry in moved.items():
        record = registry.get(name)
        if record is not None:
            port = entry["grpc_server"]["port"]
            registry.update(put=replace(record, workspace_entry=entry, endpoint=f"127.0.0.1:{port}"))
            log(f"{name}: its recorded port was taken; it now serves on port {port} (workspace.yaml follows)")
    registry.update()
    return len(records)


def servers_down(settings: Settings | None = None, log: Log = _print) -> int:
    """Stop every dev code server; the count."""
    from meta_deployer.platforms.devservers import DevServers

    settings = settings or Settings.from_env()
    return len(DevServers(settings.work_dir, settings.logs_dir).stop_all(log))


def servers_status(settings: Settings | None = None) -> list[tuple[str, str, str, int]]:
    """``(name, endpoint, status, supervisor pid)`` for every recorded dev code server."""
    from meta_deployer.platforms.devservers import DevServers

    settings = settings or Settings.from_env()
    servers = DevServers(settings.work_dir, settings.logs_dir)
    return [(s.name, s.endpoint, servers.status(s), s.pid) for s in servers.servers()]


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _prepare_instance() -> None:
    """Create and migrate the instance's storage here, once, before the webserver and the daemon start
    (as ``dagster dev`` does): two processes opening a fresh sqlite instance at the same moment both
    stamp its schema ("Version table 'alembic_version' has more than one head present")."""
    if not os.environ.get("DAGSTER_HOME"):
        return
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
        instance.event_log_storage.get_asset_keys(limit=1)
        instance.schedule_storage.all_instigator_state() if instance.schedule_storage else None


def run(host: str, port: int, workspace: Path | None = None, log: Log = _print) -> int:
    """Servers up, then the webserver and the daemon until either exits or we are told to stop; then all down."""
    settings = Settings.from_env()
    workspace = workspace or settings.workspace
    stop = {"signal": None}

    def on_signal(signum, _frame) -> None:
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen] = []
    try:
        count = servers_up(settings, log)
        _prepare_instance()
        log(f"{count} dev code server(s) running; starting the webserver on http://{host}:{port} and the daemon")
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, "DAGSTER_IS_DEV_CLI": "1"}
        procs.append(subprocess.Popen(
            [str(bin_dir / "dagster-webserver"), "-w", str(workspace), "-h", host, "-p", str(port)], env=env))
        procs.append(subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)], env=env))
        while stop["signal"] is None and all(p.poll() is None for p in procs):
            time.sleep(0.5)
        exited = [p for p in procs if p.poll() is not None]
        code = 0 if stop["signal"] is not None else (exited[0].returncode or 1)
    finally:
        _stop(procs)
        servers_down(settings, log)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code
