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

from collections.abc import Iterator
from typing import Any, Protocol

from meta_deployer.model import Artifact, Checkout, Log, Observed, Published, Served
from meta_deployer.spec import RepoSpec

__all__ = ["Artifact", "Checkout", "Log", "Observed", "Platform", "Published", "Served"]


class Platform(Protocol):
    """Where code locations run. See the module docstring for the contract."""

    name: str

    def settings_fingerprint(self, spec: RepoSpec) -> str:
        """A hash of every platform setting that changes what is deployed for ``spec``."""

    def build(self, spec: RepoSpec, checkout: Checkout, log: Log, *, run_id: str | None = None) -> Artifact:
        """Build (or find) the artifact; ``run_id`` is the deploy run's id (an idempotency token)."""

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
