"""One deploy of a repo at a time: a per-repo lease held from checkout to switch.

Two deploys of the same repo at once (two people, or the sensor and a Make
target, whose ``dagster job execute`` bypasses the run queue and its per-repo
tag limit) must not both build and switch: the second waits for the first,
then finds its work done (the record already has its fingerprint) or deploys
on top of it. The lease is an exclusive ``flock`` on ``<work_dir>/locks/
deploy-<name>.lock``: the kernel releases it when its process dies, so a
killed deploy never blocks its repo. That serves one machine (the dev
platform, and docker without a bucket); where runs start on other machines,
the lease is an object in the storage bucket with an expiry that its holder
renews (``meta_deployer.s3state.S3Leases``). Both answer :class:`DeployLeases`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout

from meta_deployer import naming
from meta_deployer.errors import MetaDeployerError, Retryable
from meta_deployer.model import Log

from meta_deployer.settings import DEFAULT_LEASE_TIMEOUT_S, Settings

__all__ = ["DEFAULT_LEASE_TIMEOUT_S", "DeployLeases", "LeaseLost", "LeaseTimeout", "Leases", "leases_for"]


class LeaseTimeout(MetaDeployerError, Retryable):
    """Another deploy of the same repo held its lease for longer than the timeout."""


class LeaseLost(MetaDeployerError):
    """This deploy's lease expired and another deploy took it over: this one must not switch."""


class DeployLeases(Protocol):
    """The per-repo deploy leases one process holds (a file lock, or an object in the bucket)."""

    def acquire(self, name: str, log: Log) -> None:
        """Hold ``name``'s lease, waiting for another holder (bounded: LeaseTimeout); again: a no-op."""

    def ensure_held(self, name: str) -> None:
        """LeaseLost when ``name``'s lease was taken from this process (nothing when it is held)."""

    def release(self, name: str) -> None:
        """Let go of ``name``'s lease if this process still holds it (else nothing)."""


class Leases:
    """The per-repo deploy leases one process holds: ``flock`` on local files (one machine)."""

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

    def ensure_held(self, name: str) -> None:
        """A kernel lock cannot be taken from a living process: nothing to check."""

    def release(self, name: str) -> None:
        """Let go of ``name``'s lease (nothing when it is not held)."""
        lock = self._held.pop(name, None)
        if lock is not None:
            lock.release(force=True)


def leases_for(settings: Settings) -> DeployLeases:
    """The deploy leases of ``settings``' state backend: ``flock`` files, or lease objects in the bucket."""
    if settings.state_backend == "s3":
        from meta_deployer.s3state import S3Leases, gateway_for

        return S3Leases(
            gateway_for(settings), settings.bucket, ttl_s=settings.lease_ttl_s, timeout_s=settings.lease_timeout_s
        )
    return Leases(settings.locks_dir, settings.lease_timeout_s)
