"""Removing a repo: stop what serves it, drop it from the workspace, delete its checkout and config.

Data (storage, logs, and on AWS log groups and images) is kept unless ``purge``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from filelock import FileLock

from meta_deployer import naming
from meta_deployer.model import Log

if TYPE_CHECKING:
    from meta_deployer.pipeline import Deployer


@dataclass(frozen=True)
class RemoveResult:
    name: str
    removed: bool
    workspace_changed: bool


def remove(deployer: Deployer, name: str, purge: bool, log: Log) -> RemoveResult:
    """Stop serving ``name`` and forget it; see the module docstring."""
    naming.validate_name(name)
    deployer.leases.acquire(name, log)
    try:
        return _remove(deployer, name, purge, log)
    finally:
        deployer.leases.release(name)


def _remove(deployer: Deployer, name: str, purge: bool, log: Log) -> RemoveResult:
    registry = deployer.registry
    record = registry.get(name)
    deployer.platform.stop(name, purge, log)
    changed = registry.update(delete=name)
    checkout = deployer.settings.checkout_path(name)
    with FileLock(str(checkout) + ".lock", timeout=600):
        if checkout.exists():
            shutil.rmtree(checkout)
            log(f"deleted checkout {checkout}")
    registry.delete_config(name, log)
    removed = record is not None or changed
    if removed:
        log(f"{name}: removed")
    else:
        known = ", ".join(sorted(registry.all())) or "none"
        log(f"{name}: nothing is deployed under this name, nothing to do (deployed: {known})")
    # The lock file stays: a process may be waiting on it, and deleting it would let a third one
    # lock a new file of the same name while the waiter holds the old one.
    return RemoveResult(name, removed, changed)


def dry_run_remove(deployer: Deployer, name: str, purge: bool) -> str:
    """What :func:`remove` would do, changing nothing."""
    naming.validate_name(name)
    lines = [deployer.platform.dry_run_removal(name, purge)]
    if deployer.registry.get(name) is not None:
        config = "" if deployer.settings.config_git_url else " and config.yml"
        lines.append(f"would remove {name} from workspace.yaml, delete its checkout{config}, and reload")
    return "\n".join(lines)
