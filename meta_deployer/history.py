"""A repo's deploy history, from the materializations of ``code_locations/<name>`` (pure; no dagster import).

Every deploy that changed what serves records one materialization (``definitions.write_workspace``), and
every removal one with ``status: removed``. A deployment's id is the id of the run that deployed it.
The rollback job (``definitions.rollback_repo``) and the REST API (``meta_deployer.api``) both read the
history through :func:`entry` and pick the deployment to serve again with :func:`find`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: A commit named by hand: at least 7 hex digits (a prefix of the full hash).
_COMMIT_PREFIX = re.compile(r"[0-9a-f]{7,40}")


@dataclass(frozen=True)
class DeploymentEntry:
    """One successful deploy of a repo, as its materialization records it."""

    id: str  # the deploy run's id
    commit: str
    artifact: str
    digest: str
    dagster_version: str
    platform: str
    branch: str
    timestamp: float
    rollback_of: str = ""  # for a rollback: the deployment id it served again

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def entry(run_id: str, timestamp: float, metadata: Mapping[str, Any]) -> DeploymentEntry | None:
    """The deployment a materialization records (metadata values as text); None for a removal."""
    if metadata.get("status") == "removed" or not metadata.get("commit"):
        return None
    text = {k: str(v) if v is not None else "" for k, v in metadata.items()}
    return DeploymentEntry(
        id=run_id,
        commit=text.get("commit", ""),
        artifact=text.get("artifact", ""),
        digest=text.get("digest", ""),
        dagster_version=text.get("dagster_version", ""),
        platform=text.get("platform", ""),
        branch=text.get("branch", ""),
        timestamp=float(timestamp),
        rollback_of=text.get("rollback_of", ""),
    )


def find(entries: Iterable[DeploymentEntry], to: str) -> DeploymentEntry | None:
    """The deployment ``to`` names: its id (a run id), else the newest one whose commit starts with ``to``."""
    to = (to or "").strip()
    ordered = sorted(entries, key=lambda e: e.timestamp, reverse=True)
    for e in ordered:
        if e.id == to:
            return e
    if _COMMIT_PREFIX.fullmatch(to):
        for e in ordered:
            if e.commit.startswith(to):
                return e
    return None
