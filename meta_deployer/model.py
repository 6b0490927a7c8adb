"""The values the deploy steps hand to each other (pure; the bottom of the house beside spec and naming).

    Checkout -> Artifact -> Published -> Served      (one deploy, step by step)
    Observed                                         (what a platform sees running)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A step's log sink: the Dagster op's logger in a run, print() on the CLI.
Log = Callable[[str], None]


@dataclass(frozen=True)
class Checkout:
    """A converged git checkout pinned at one commit."""

    name: str
    path: Path
    commit: str
    branch: str
    git_url: str  # already redacted: safe to print
    changed: bool  # False when the checkout already was at this commit

    @property
    def short_commit(self) -> str:
        return self.commit[:12]


@dataclass(frozen=True)
class Artifact:
    """What ``build`` produced: a virtualenv path or an image reference."""

    kind: str  # "venv" or "image"
    ref: str
    fingerprint: str
    built: bool  # False when an identical artifact already existed
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    """The artifact where the platform pulls it from (a digest for images)."""

    ref: str
    digest: str | None = None
    pushed: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Served:
    """A running, healthy version and the workspace entry that points at it."""

    endpoint: str
    workspace_entry: dict[str, Any]
    changed: bool
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    """What a platform sees running for one repo (for list-repos and adoption)."""

    name: str
    status: str  # e.g. "running", "pending 0/1", "stopped", "missing"
    endpoint: str | None = None
    commit: str | None = None
    artifact: str | None = None
    workspace_entry: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CodeServer:
    """How a location's code server starts in a container (from the runtime contract, by its platform)."""

    command: tuple[str, ...]
    environment: dict[str, str]
    port: int
    health_command: tuple[str, ...]
    #: Loads the definitions and exits (non-zero when they fail): the contract's ``validate_command``.
    validate_command: tuple[str, ...] = ()
