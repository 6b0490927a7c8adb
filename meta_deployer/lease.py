"""One deploy of a repo at a time: a per-repo lease held from checkout to switch.

Two deploys of the same repo at once (two people, or the sensor and a Make
target, whose ``dagster job execute`` bypasses the run queue and its per-repo
tag limit) must not both build and switch: the second waits for the first,
then finds its work done (the record already has its fingerprint) or deploys
on top of it. The lease is an exclusive ``flock`` on ``<work_dir>/locks/
deploy-<name>.lock``: the kernel releases it when its process dies, so a
killed deploy never blocks its repo. (It serves one machine, as the dev and
docker platforms do; a platform whose runs start on other machines needs a
lease in shared storage.)
"""

from __future__ import annotations

import time
from pathlib import Path

from filelock import FileLock, Timeout

from meta_deployer import naming
from meta_deployer.errors import MetaDeployerError, Retryable
from meta_deployer.model import Log

#: How long a deploy waits for another deploy of the same repo before giving up.
DEFAULT_LEASE_TIMEOUT_S = 3600.0


class LeaseTimeout(MetaDeployerError, Retryable):
    """Another deploy of the same repo held its lease for longer than the timeout."""


class Leases:
    """The per-repo deploy leases one process holds."""

    def __init__(self, directory: Path, timeout_s: float = DEFAULT_LEASE_TIMEOUT_S):
        self.directory = directory
        self.timeout_s = timeout_s
        self._held: dict[str, FileLock] = {}

    def acquire(self, name: str, log: Log) -> None:
        """Hold ``name``'s lease, waiting for another holder; a second acquire by this process is a no-op."""
        if name in self._held:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.directory / f"deploy-{naming.validate_name(name)}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log(f"{name}: another deploy of this repo is running; waiting for it to finish")
            started = time.monotonic()
            try:
                lock.acquire(timeout=self.timeout_s)
            except Timeout:
                raise LeaseTimeout(
                    f"{name}: another deploy of this repo held it for over {self.timeout_s:.0f}s; try again later"
                ) from None
            log(f"{name}: the other deploy finished after {time.monotonic() - started:.1f}s")
        self._held[name] = lock

    def release(self, name: str) -> None:
        """Let go of ``name``'s lease (nothing when it is not held)."""
        lock = self._held.pop(name, None)
        if lock is not None:
            lock.release(force=True)
