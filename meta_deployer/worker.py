"""Which process runs a deploy, and whether it is still alive (so a killed deploy never blocks its repo).

Every deploy run tags itself with its worker, ``<host>/<pid namespace>:<pid>:<process start
time>``, in its first step. A run whose worker died (``kill -9``, a closed terminal, a reboot) stays STARTED in the
instance forever, and the per-repo run limit in dagster.yaml would then keep that repo's next
deploy QUEUED forever. Dagster's run monitoring cannot see it: the default run launcher has no
worker health check, and ``dagster job execute`` (the Make targets) bypasses the launcher. So the
``dead_deploys_sensor`` reads these tags and fails the runs whose worker is gone. The start time
guards against a recycled pid; the pid namespace against a pid of another container that shares
the host's name (host networking): a worker is judged only from its own namespace.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

#: Run tag naming the process that executes a deploy run.
WORKER_TAG = "meta_deployer/worker"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _where() -> str:
    """``<host>/<pid namespace>``: where a pid means this process (containers on the host network
    share the host's name, not its pids)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").rpartition("[")[2].rstrip("]")
    except OSError:
        namespace = "?"
    return f"{socket.gethostname()}/{namespace}"


def this_worker() -> str:
    """``<host>/<pid namespace>:<pid>:<start time>`` of the current process."""
    pid = os.getpid()
    return f"{_where()}:{pid}:{_start_time(pid) or '?'}"


def is_dead(worker: str) -> bool | None:
    """True when ``worker`` ran in this host's pid namespace and is gone; None when it cannot be told
    from here (another host or container, or a tag in another format)."""
    where, _, rest = worker.partition(":")
    pid_text, _, started = rest.partition(":")
    if where != _where() or not pid_text.isdigit() or started in ("", "?"):
        return None
    return _start_time(int(pid_text)) != started
