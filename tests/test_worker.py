"""Telling a live deploy process from a dead one (the dead_deploys_sensor relies on it)."""

from __future__ import annotations

import subprocess
import sys

from meta_deployer.worker import is_dead, this_worker


def test_a_live_worker_is_not_dead():
    assert is_dead(this_worker()) is False


def test_an_exited_worker_is_dead_and_a_recycled_pid_does_not_fool_it():
    child = subprocess.Popen([sys.executable, "-c", "from meta_deployer.worker import this_worker; print(this_worker())"],
                             stdout=subprocess.PIPE, text=True)
    worker = child.communicate()[0].strip()
    assert is_dead(worker) is True
    host, pid, _ = this_worker().split(":")
    assert is_dead(f"{host}:{pid}:1") is True  # our own pid, but another start time: a recycled pid


def test_a_worker_on_another_host_or_malformed_is_unknown():
    assert is_dead("some-other-host:1:100") is None
    assert is_dead("garbage") is None


def test_a_worker_in_another_pid_namespace_of_the_same_host_is_never_judged_from_here():
    """A container on the host network shares the host's name, not its pids: its worker's pid means
    nothing here, so the sensor must not fail its run (it did, before the namespace was in the tag)."""
    import shutil

    unshare = shutil.which("unshare")
    assert unshare, "util-linux's unshare is part of every Debian system"
    out = subprocess.run(
        [unshare, "--pid", "--fork", sys.executable, "-c", "from meta_deployer.worker import this_worker; print(this_worker())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    where, pid, _ = out.split(":")
    assert where.split("/")[0] == this_worker().split("/")[0] and pid == "1"  # same host name, its own pids
    assert where != this_worker().split(":")[0]
    assert is_dead(out) is None
