"""Removing a repo: stop what serves it, drop it from the workspace, delete its checkout and config.

Data (storage, logs, and on AWS log groups and images) is kept unless ``purge``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from filelock import FileLock

from meta_deployer import naming
from meta_deployer.errors import MetaDeployerError
from meta_deployer.model import Log


class RemovalRefused(MetaDeployerError):
    """``remove-repo`` was given one location of a repository that holds several."""

if TYPE_CHECKING:
    from meta_deployer.pipeline import Deployer


@dataclass(frozen=True)
class RemoveResult:
    name: str
    removed: bool
    workspace_changed: bool


def parts_of(deployer: Deployer, name: str) -> list[str]:
    """The deployed locations of repository ``name`` when it holds several (their records say so)."""
    return sorted(n for n, record in deployer.registry.all().items() if record.parent == name)


def remove(deployer: Deployer, name: str, purge: bool, log: Log, part_of: str | None = None) -> RemoveResult:
    """Stop serving ``name`` and forget it; see the module docstring. A repository with several locations
    loses all of them; ``part_of``: ``name`` is one location of that repository (its lease is held)."""
    naming.validate_name(name)
    if part_of is None:
        record = deployer.registry.get(name)
        if record is not None and record.parent and record.parent != name:
            raise RemovalRefused(
                f"{name} is one location of {record.parent}: remove-repo REPO_NAME={record.parent} removes every "
                f"location, or drop this one from the locations: of repos/{record.parent}/config.yml and update-repo"
            )
    parts = parts_of(deployer, name) if part_of is None else []
    held = [name, *parts] if part_of is None else [name]
    for each in held:
        deployer.leases.acquire(each, log)
    try:
        changed = False
        for part in parts:
            changed = _remove(deployer, part, purge, log, part=True).workspace_changed or changed
        result = _remove(deployer, name, purge, log, part=part_of is not None)
        if parts:
            log(f"{name}: removed with its locations {', '.join(parts)}")
            return RemoveResult(name, True, changed or result.workspace_changed)
        return result
    finally:
        for each in held:
            deployer.leases.release(each)


def remove_part(deployer: Deployer, name: str, log: Log) -> RemoveResult:
    """Stop serving ``name`` and drop its record and entry, keeping its checkout and config.yml (the
    caller holds its lease): a single location whose repository now deploys several."""
    return _remove(deployer, name, False, log, part=True)


def _remove(deployer: Deployer, name: str, purge: bool, log: Log, part: bool = False) -> RemoveResult:
    registry = deployer.registry
    record = registry.get(name)
    deployer.platform.stop(name, purge, log)
    changed = registry.update(delete=name)
    if part:  # a location of a repository: it has no checkout or config.yml of its own
        if record is not None:
            log(f"{name}: removed")
        return RemoveResult(name, record is not None, changed)
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
    lines = [deployer.platform.dry_run_removal(part, purge) for part in parts_of(deployer, name)]
    lines.append(deployer.platform.dry_run_removal(name, purge))
    if deployer.registry.get(name) is not None:
        config = "" if deployer.settings.config_git_url else " and config.yml"
        lines.append(f"would remove {name} from workspace.yaml, delete its checkout{config}, and reload")
    return "\n".join(lines)
