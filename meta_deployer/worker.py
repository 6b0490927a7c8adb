"""Which process runs a deploy, and whether it is still alive (so a killed deploy never blocks its repo).

Every deploy run tags itself with its worker, ``<host>:<pid>:<process start time>``, in its first
step. A run whose worker died (``kill -9``, a closed terminal, a reboot) stays STARTED in the
instance forever, and the per-repo run limit in dagster.yaml would then keep that repo's next
deploy QUEUED forever. Dagster's run monitoring cannot see it: the default run launcher has no
worker health check, and ``dagster job execute`` (the Make targets) bypasses the launcher. So the
``dead_deploys_sensor`` reads these tags and fails the runs whose worker is gone. The start time
guards against a recycled pid.
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


def this_worker() -> str:
    """``<host>:<pid>:<start time>`` of the current process."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}"


def is_dead(worker: str) -> bool | None:
    """True when ``worker`` ran on this host and is gone; None when it cannot be told from here."""
    host, _, rest = worker.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or started in ("", "?"):
        return None
    return _start_time(int(pid_text)) != started
