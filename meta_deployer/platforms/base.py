"""The platform interface: where a code location runs.

Every platform (``dev``, ``docker``, ``ecs``) implements the same small
interface, and the pipeline (``meta_deployer.pipeline``) drives it:

    build(spec, checkout)            -> Artifact   (a virtualenv or an image; validated)
    publish(spec, artifact)          -> Published  (no-op for dev; a registry push otherwise)
    serve(spec, published, checkout) -> Served     (running and healthy; returns its workspace entry)
    after_switch(spec, served)                     (workspace now points at the new version: retire the old)
    stop(name, purge)                              (remove what serves the repo; data only with purge)
    observe()                        -> {name: Observed}  (what runs now, for adoption and list-repos)
    dry_run(spec, checkout)          -> text  (what serve would do; changes nothing)
    dry_run_removal(name, purge)     -> text  (what stop would do; changes nothing)
    logs(name, follow, tail)         -> lines of the code server's output

Each call is idempotent: called again with the same inputs it finds the work
done and changes nothing. A failure leaves the previous version serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from meta_deployer.spec import RepoSpec

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


class Platform(Protocol):
    """Where code locations run. See the module docstring for the contract."""

    name: str

    def settings_fingerprint(self, spec: RepoSpec) -> str:
        """A hash of every platform setting that changes what is deployed for ``spec``."""

    def build(self, spec: RepoSpec, checkout: Checkout, log: Log) -> Artifact: ...

    def publish(self, spec: RepoSpec, artifact: Artifact, log: Log) -> Published: ...

    def serve(self, spec: RepoSpec, published: Published, checkout: Checkout, log: Log) -> Served: ...

    def after_switch(self, spec: RepoSpec, served: Served, log: Log) -> None: ...

    def is_serving(self, name: str, record: dict[str, Any]) -> bool:
        """True when the version described by a deployment ``record`` still serves."""

    def stop(self, name: str, purge: bool, log: Log) -> None: ...

    def observe(self) -> dict[str, Observed]: ...

    def logs(self, name: str, follow: bool, tail: int) -> Iterator[str]: ...

    def dry_run(self, spec: RepoSpec, checkout: Checkout) -> str: ...

    def dry_run_removal(self, name: str, purge: bool) -> str: ...
