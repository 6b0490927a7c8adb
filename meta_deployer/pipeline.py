"""The deploy pipeline as plain step functions; the Dagster ops only adapt them.

    checkout -> build -> publish -> serve -> switch (workspace.yaml) -> reload

``Deployer.checkout`` converges the git checkout, completes the spec (a code
source is detected when config.yml names none, and written back to
config.yml), and computes the deploy fingerprint: the commit, the spec and the
platform's settings. When the deployed record has the same fingerprint and
still serves, every later step is a no-op, so a second run changes nothing
and is fast. A failure in any step before ``switch`` leaves the workspace,
and so the version that serves, exactly as it was.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import meta_deployer
from meta_deployer import configsource, discovery, dryrun, gitops, grants, removal, snapshot, sync
from meta_deployer.detect import detect_code_source
from meta_deployer.errors import DetectionError, NotDeployedError, SpecError
from meta_deployer.lease import leases_for
from meta_deployer.model import Artifact, Checkout, Log, Published, Served
from meta_deployer.platforms import get_platform
from meta_deployer.platforms.base import Platform
from meta_deployer.registry import Registry
from meta_deployer.removal import RemoveResult
from meta_deployer.settings import Settings
from meta_deployer.spec import RepoSpec, parse_spec
from meta_deployer.state import Deployment
from meta_deployer.webserver import FleetReload, reload_replicas

__all__ = ["DeployState", "Deployer", "RemoveResult", "deployment_summary", "with_detected_code_source"]


def _print(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class DeployState:
    """What one deploy run knows so far; each step returns it with one more field set."""

    spec: RepoSpec
    checkout: Checkout
    fingerprint: str
    unchanged: bool
    started_at: float
    artifact: Artifact | None = None
    published: Published | None = None
    served: Served | None = None
    record: Deployment | None = None
    workspace_changed: bool = False
    #: The spec as config.yml says it (``spec`` is what is deployed: cross-repo reads only where the
    #: owner shares, see ``meta_deployer.grants``); written back to config.yml, hashed in the record.
    config_spec: RepoSpec | None = None
    #: The version of the repo's record when ``checkout`` read it (None: there was none): the record is
    #: written only if it is still that one, so two deploys that read the same record cannot both win.
    record_version: str | None = None
    #: A rollback: the id of the earlier deployment this one serves again (``meta_deployer.history``).
    rollback_of: str | None = None


class Deployer:
    """Runs the deploy steps for one settings/platform pair."""

    def __init__(self, settings: Settings | None = None, platform: Platform | None = None):
        self.settings = settings or Settings.from_env()
        self.platform = platform or get_platform(self.settings)
        self.registry = Registry(self.settings)
        self.leases = leases_for(self.settings)

    # -- spec ----------------------------------------------------------------
    def spec_from_file(self, name: str) -> RepoSpec:
        """``name``'s config.yml, from the configured source (local folder or configuration repository)."""
        where, spec = configsource.configured_spec(self.settings, name)
        if spec is None:
            raise NotDeployedError(f"{where} does not exist; add the repo first (make add-repo REPO_URL=... REPO_NAME={name})")
        return spec

    def fingerprint(self, spec: RepoSpec, commit: str) -> str:
        data = "|".join(
            [commit, spec.content_hash(), self.platform.name, self.platform.settings_fingerprint(spec), meta_deployer.__version__]
        )
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    # -- steps ---------------------------------------------------------------
    def checkout(self, spec: RepoSpec, log: Log = _print, at: str | None = None) -> DeployState:
        """Take the repo's deploy lease, then :meth:`_checkout`; the lease is let go after ``switch``
        or on any failure, so a second deploy of the same repo waits and then finds its work done.
        ``at`` (a full commit hash) checks out that earlier commit instead of the branch head: a rollback."""
        self.leases.acquire(spec.name, log)
        with self._lease_on_failure(spec.name):
            return self._checkout(spec, log, at)

    @contextmanager
    def _lease_on_failure(self, name: str) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.leases.release(name)
            raise

    def _checkout(self, spec: RepoSpec, log: Log, at: str | None = None) -> DeployState:
        """Converge the checkout, complete the spec, and decide whether anything must change."""
        started = time.time()
        auth = self.settings.git_auth()
        url = gitops.resolve_url(spec.git_url, self.settings.root, self.settings.private_dirs)
        if at is None:
            commit, changed = gitops.converge(url, spec.branch, self.settings.checkout_path(spec.name), auth)
        else:
            commit, changed = gitops.converge_at(url, spec.branch, at, self.settings.checkout_path(spec.name), auth)
        snapshot.check_links(self.settings.checkout_path(spec.name))
        shown_url = gitops.redact(spec.git_url, auth.secrets)
        log(f"{spec.name}: {shown_url} {spec.branch} is at {commit[:12]}" + ("" if changed else " (checkout unchanged)"))
        path = self.settings.checkout_path(spec.name)
        if spec.working_directory and not (path / spec.working_directory).is_dir():
            raise SpecError(
                f"repos/{spec.name}/config.yml",
                [("working_directory", f"{spec.working_directory!r} is not a folder in the repository at {commit[:12]}")],
            )
        if spec.code_source is None:
            spec, found = with_detected_code_source(spec, path)
            log(f"{spec.name}: detected code source {found}")
        self._check_code_source_exists(spec, path)
        checkout = Checkout(spec.name, path, commit, spec.branch, shown_url, changed)
        config_spec, spec = spec, grants.granted(spec, self.settings, log)
        fingerprint = self.fingerprint(spec, commit)
        record, version = self.registry.read(spec.name)
        unchanged = (
            record is not None
            and record.fingerprint == fingerprint
            and self.platform.is_serving(spec.name, asdict(record))
        )
        if unchanged:
            log(f"{spec.name}: {commit[:12]} with this spec already serves on {self.platform.name}; nothing to do")
        return DeployState(spec, checkout, fingerprint, unchanged, started, config_spec=config_spec, record_version=version)

    def _check_code_source_exists(self, spec: RepoSpec, path: Path) -> None:
        wd = path / (spec.working_directory or ".")
        if spec.python_file and not (wd / spec.python_file).is_file():
            raise SpecError(
                f"repos/{spec.name}/config.yml",
                [("python_file", f"{spec.python_file!r} does not exist in the repository (relative to {spec.working_directory or 'the repository root'})")],
            )

    def build(self, state: DeployState, log: Log = _print, run_id: str | None = None) -> DeployState:
        if state.unchanged:
            return state
        with self._lease_on_failure(state.spec.name):
            return replace(state, artifact=self.platform.build(state.spec, state.checkout, log, run_id=run_id))

    def publish(self, state: DeployState, log: Log = _print) -> DeployState:
        if state.unchanged:
            return state
        assert state.artifact is not None
        with self._lease_on_failure(state.spec.name):
            return replace(state, published=self.platform.publish(state.spec, state.artifact, log))

    def serve(self, state: DeployState, log: Log = _print) -> DeployState:
        if state.unchanged:
            return state
        assert state.published is not None
        with self._lease_on_failure(state.spec.name):
            return replace(state, served=self.platform.serve(state.spec, state.published, state.checkout, log))

    def switch(self, state: DeployState, log: Log = _print) -> DeployState:
        """Point workspace.yaml at the new version, record it, retire the old version; then let go
        of the repo's lease (the reload needs none)."""
        try:
            return self._switch(state, log)
        finally:
            self.leases.release(state.spec.name)

    def _switch(self, state: DeployState, log: Log) -> DeployState:
        self.leases.ensure_held(state.spec.name)
        record = self.registry.get(state.spec.name)
        if not state.unchanged:
            assert state.served is not None and state.published is not None and state.artifact is not None
            record = Deployment(
                name=state.spec.name,
                git_url=state.checkout.git_url,
                branch=state.spec.branch,
                commit=state.checkout.commit,
                platform=self.platform.name,
                artifact=state.published.ref,
                digest=state.published.digest,
                endpoint=state.served.endpoint,
                workspace_entry=state.served.workspace_entry,
                fingerprint=state.fingerprint,
                spec_hash=(state.config_spec or state.spec).content_hash(),
                deployed_at=time.time(),
                duration_s=round(time.time() - state.started_at, 3),
                metadata={**state.artifact.metadata, **state.published.metadata, **state.served.metadata},
                code_archive=state.published.metadata.get("code_archive"),
                code_sha256=state.published.metadata.get("code_sha256"),
            )
        assert record is not None
        changed = self.registry.update(put=record, expected=state.record_version)
        # config.yml records the desired state (with a detected code source) once it serves:
        # a deploy that fails leaves no file behind for the sensor to retry.
        self.registry.write_config(state.config_spec or state.spec, log)
        if not state.unchanged:
            assert state.served is not None
            self.platform.after_switch(state.spec, state.served, log)
        log(f"workspace.yaml {'updated' if changed else 'unchanged'}")
        return replace(state, record=record, workspace_changed=changed)

    def render_workspace(self) -> bool:
        """Re-render workspace.yaml from the records (``make dev`` does this first)."""
        return self.registry.update()

    def reload(self, changed: bool, log: Log = _print, location: str | None = None) -> FleetReload | None:
        """Reload every webserver replica (``META_DEPLOYER_WEBSERVERS``; by default the one
        ``DAGSTER_WEBSERVER_URL``): the whole workspace when workspace.yaml changed, only ``location``
        when its entry stayed the same but a new version serves behind it. Logs one line per
        replica; a replica that does not answer is a warning naming it, never a failure."""
        if not changed and location is None:
            log("nothing changed; no reload needed")
            return None
        found = discovery.discover(self.settings)
        result = reload_replicas(
            found.replicas, None if changed else location, self.settings.reload_timeout_s, notes=found.notes
        )
        for line in result.lines():
            log(line)
        return result

    def deploy(self, spec: RepoSpec, log: Log = _print) -> DeployState:
        """All steps in order (the CLI and benchmarks; the jobs run them as ops)."""
        state = self.checkout(spec, log)
        with self._lease_on_failure(spec.name):
            for step in (self.build, self.publish, self.serve, self.switch):
                state = step(state, log)
        self.reload_after(state, log)
        return state

    def reload_after(self, state: DeployState, log: Log = _print) -> FleetReload | None:
        """The reload a deploy needs: none when nothing changed."""
        return self.reload(state.workspace_changed, log, location=None if state.unchanged else state.spec.name)

    # -- removal, dry runs and sync (their own modules) -----------------------
    def remove(self, name: str, purge: bool = False, log: Log = _print) -> RemoveResult:
        """Stop serving ``name`` and forget it (data kept unless ``purge``): see ``meta_deployer.removal``."""
        return removal.remove(self, name, purge, log)

    def dry_run(self, spec: RepoSpec) -> str:
        """What a deploy of ``spec`` would do, changing nothing: see ``meta_deployer.dryrun``."""
        return dryrun.dry_run(self, spec)

    def dry_run_remove(self, name: str, purge: bool = False) -> str:
        """What ``remove`` would do, changing nothing."""
        return removal.dry_run_remove(self, name, purge)

    def moved(self, log: Log = _print) -> tuple[list[RepoSpec], list[str]]:
        """Specs whose branch head, spec or platform moved: see ``meta_deployer.sync``."""
        return sync.moved(self, log)


def with_detected_code_source(spec: RepoSpec, checkout: Path) -> tuple[RepoSpec, dict[str, str]]:
    """``spec`` completed with the code source found in its checkout (inside its working directory)."""
    try:
        found = detect_code_source(checkout / (spec.working_directory or "."))
    except DetectionError as exc:
        raise DetectionError(f"{spec.name}: {exc}") from None
    if spec.working_directory:
        found["working_directory"] = "/".join(p for p in (spec.working_directory, found.get("working_directory")) if p)
    return parse_spec({**spec.to_config(), **found}, f"{spec.name} (detected code source)"), found


def deployment_summary(record: Deployment | None) -> dict[str, Any]:
    """Materialization metadata for a deploy: commit, platform, artifact, Dagster release, endpoint, duration."""
    if record is None:
        return {}
    return {
        "commit": record.commit,
        "branch": record.branch,
        "git_url": record.git_url,
        "platform": record.platform,
        "artifact": record.artifact,
        "digest": record.digest or "",
        "dagster_version": (record.metadata or {}).get("dagster_version") or "",
        "endpoint": record.endpoint,
        "duration_s": record.duration_s,
    }
