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
import os
import posixpath
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import meta_deployer
from meta_deployer import configsource, discovery, dryrun, gitops, grants, removal, snapshot, sync
from meta_deployer.detect import detect
from meta_deployer.errors import DetectionError, NotDeployedError, SpecError
from meta_deployer.lease import leases_for
from meta_deployer.model import Artifact, Checkout, Log, Published, Served
from meta_deployer.platforms import get_platform
from meta_deployer.platforms.base import Platform
from meta_deployer.registry import Registry
from meta_deployer.removal import RemoveResult
from meta_deployer.settings import Settings
from meta_deployer.spec import LocationSpec, RepoSpec, parse_spec
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
    #: One location of a repository that holds several: the repository's name (its config.yml).
    parent: str | None = None
    #: A repository that holds several locations: one state per location (``spec`` is the repository's),
    #: each deployed by the same steps; the repository's config.yml is written once all of them serve.
    parts: tuple["DeployState", ...] = ()

    def names(self) -> list[str]:
        """The deployed names this state covers: its locations', or its own."""
        return [p.spec.name for p in self.parts] if self.parts else [self.spec.name]
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
        A repository with several locations also holds each location's lease. ``at`` (a full commit
        hash) checks out that earlier commit instead of the branch head: a rollback."""
        self.leases.acquire(spec.name, log)
        with self._lease_on_failure(spec.name):
            state = self._checkout(spec, log, at)
            if state.parts:
                for name in state.names():
                    self.leases.acquire(name, log)
            return state

    @contextmanager
    def _lease_on_failure(self, name: str, *more: str) -> Iterator[None]:
        try:
            yield
        except BaseException:
            for held in (name, *more):
                self.leases.release(held)
            raise

    def _group_failure(self, state: DeployState) -> Any:
        return self._lease_on_failure(state.spec.name, *(state.names() if state.parts else ()))

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
        _check_working_directory(spec, spec.working_directory, path, commit, "working_directory")
        if spec.code_source is None and not spec.locations:
            spec, found = with_detected_code_source(spec, path)
            log(f"{spec.name}: detected code source {found}")
        config_spec, granted = spec, grants.granted(spec, self.settings, log)
        if spec.locations:
            parts = tuple(
                self._location_state(config_spec, part, path, commit, shown_url, changed, started, log)
                for part in granted.location_specs()
            )
            fingerprint = hashlib.sha256("|".join(p.fingerprint for p in parts).encode()).hexdigest()[:16]
            checkout = Checkout(spec.name, path, commit, spec.branch, shown_url, changed)
            return DeployState(
                granted, checkout, fingerprint, all(p.unchanged for p in parts), started, config_spec=config_spec, parts=parts
            )
        self._check_code_source_exists(spec, path)
        checkout = Checkout(spec.name, path, commit, spec.branch, shown_url, changed)
        return self._state(granted, checkout, started, log, config_spec=config_spec)

    def _state(self, spec: RepoSpec, checkout: Checkout, started: float, log: Log, **more: Any) -> DeployState:
        fingerprint = self.fingerprint(spec, checkout.commit)
        record, version = self.registry.read(spec.name)
        parent = more.get("parent")
        if record is not None and record.parent != parent:
            owner = f"a location of {record.parent}" if record.parent else "a repository of its own"
            raise SpecError(
                f"repos/{parent or spec.name}/config.yml",
                [("locations" if parent else "name", f"{spec.name} is already deployed as {owner}; rename the location or the repository")],
            )
        unchanged = (
            record is not None
            and record.fingerprint == fingerprint
            and self.platform.is_serving(spec.name, asdict(record))
        )
        if unchanged:
            log(f"{spec.name}: {checkout.commit[:12]} with this spec already serves on {self.platform.name}; nothing to do")
        return DeployState(spec, checkout, fingerprint, unchanged, started, record_version=version, **more)

    def _location_state(
        self, config_spec: RepoSpec, part: RepoSpec, path: Path, commit: str, shown_url: str, changed: bool,
        started: float, log: Log,
    ) -> DeployState:
        """One location of a repository with several: its code source (detected inside its folder when
        config.yml names none) checked against the checkout, and whether it must change."""
        where = f"locations ({part.name})"
        _check_working_directory(config_spec, part.working_directory, path, commit, where)
        if part.code_source is None:
            part, found = with_detected_code_source(part, path, location=True)
            log(f"{part.name}: detected code source {found}")
        self._check_code_source_exists(part, path)
        checkout = Checkout(part.name, path, commit, part.branch, shown_url, changed)
        return self._state(part, checkout, started, log, config_spec=config_spec, parent=config_spec.name)

    def _check_code_source_exists(self, spec: RepoSpec, path: Path) -> None:
        wd = path / (spec.working_directory or ".")
        if spec.python_file and not (wd / spec.python_file).is_file():
            raise SpecError(
                f"repos/{spec.name}/config.yml",
                [("python_file", f"{spec.python_file!r} does not exist in the repository (relative to {spec.working_directory or 'the repository root'})")],
            )

    def build(self, state: DeployState, log: Log = _print, run_id: str | None = None) -> DeployState:
        if state.parts:
            with self._group_failure(state):
                return replace(state, parts=tuple(self.build(p, log, run_id) for p in state.parts))
        if state.unchanged:
            return state
        with self._lease_on_failure(state.spec.name):
            return replace(state, artifact=self.platform.build(state.spec, state.checkout, log, run_id=run_id))

    def publish(self, state: DeployState, log: Log = _print) -> DeployState:
        if state.parts:
            with self._group_failure(state):
                return replace(state, parts=tuple(self.publish(p, log) for p in state.parts))
        if state.unchanged:
            return state
        assert state.artifact is not None
        with self._lease_on_failure(state.spec.name):
            return replace(state, published=self.platform.publish(state.spec, state.artifact, log))

    def serve(self, state: DeployState, log: Log = _print) -> DeployState:
        if state.parts:
            with self._group_failure(state):
                return replace(state, parts=tuple(self.serve(p, log) for p in state.parts))
        if state.unchanged:
            return state
        assert state.published is not None
        with self._lease_on_failure(state.spec.name):
            return replace(state, served=self.platform.serve(state.spec, state.published, state.checkout, log))

    def switch(self, state: DeployState, log: Log = _print) -> DeployState:
        """Point workspace.yaml at the new version, record it, retire the old version; then let go
        of the repo's lease (the reload needs none)."""
        try:
            if state.parts:
                return self._switch_group(state, log)
            return self._switch(state, log)
        finally:
            for name in {state.spec.name, *state.names()}:
                self.leases.release(name)

    def _switch_group(self, state: DeployState, log: Log) -> DeployState:
        """Switch every location, retire the repository's locations config.yml no longer lists, then
        write its config.yml (once all of them serve)."""
        parts = tuple(self._switch(p, log) for p in state.parts)
        changed = self._retire(state.spec.name, {p.spec.name for p in parts}, log)
        self.registry.write_config(state.config_spec or state.spec, log)
        return replace(state, parts=parts, workspace_changed=any(p.workspace_changed for p in parts) or changed)

    def _retire(self, repo: str, keep: set[str], log: Log) -> bool:
        """Remove what ``repo`` deployed before and no longer does: locations its config.yml dropped, its
        single location once it has several, its several once it has one. True when workspace.yaml changed."""
        changed = False
        for name, record in sorted(self.registry.all().items()):
            if name in keep:
                continue
            if record.parent == repo:
                log(f"{name}: no longer a location of {repo}; removing it")
                changed = removal.remove(self, name, False, log, part_of=repo).workspace_changed or changed
            elif name == repo and record.parent is None:  # was one location; its lease is held
                log(f"{name}: now deployed as its locations {', '.join(sorted(keep))}; removing the single one")
                changed = removal.remove_part(self, name, log).workspace_changed or changed
        return changed

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
                metadata={
                    **state.artifact.metadata, **state.published.metadata, **state.served.metadata,
                    grants.READS_KEY: list(state.spec.access.read),  # the grants it serves with (after consent)
                },
                code_archive=state.published.metadata.get("code_archive"),
                code_sha256=state.published.metadata.get("code_sha256"),
                parent=state.parent,
            )
        assert record is not None
        if state.unchanged and record.spec_hash != (state.config_spec or state.spec).content_hash():
            record = replace(record, spec_hash=(state.config_spec or state.spec).content_hash())
        changed = self.registry.update(put=record, expected=state.record_version)
        # config.yml records the desired state (with a detected code source) once it serves:
        # a deploy that fails leaves no file behind for the sensor to retry. A repository with several
        # locations writes its own once every location serves (``_switch_group``).
        if state.parent is None:
            changed = self._retire(state.spec.name, {state.spec.name}, log) or changed
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
        with self._group_failure(state):
            for step in (self.build, self.publish, self.serve, self.switch):
                state = step(state, log)
        self.reload_after(state, log)
        return state

    def reload_after(self, state: DeployState, log: Log = _print) -> FleetReload | None:
        """The reload a deploy needs: none when nothing changed (with several locations: the whole
        workspace when it changed, else each location that serves a new version)."""
        if state.parts and not state.workspace_changed:
            result = None
            for part in state.parts:
                if not part.unchanged:
                    result = self.reload(False, log, location=part.spec.name)
            if result is None:
                log("nothing changed; no reload needed")
            return result
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


def _check_working_directory(spec: RepoSpec, rel: str | None, path: Path, commit: str, field: str) -> None:
    """``rel`` is a real folder of the checkout at ``path`` (not a link that leaves it)."""
    if not rel:
        return
    folder = path / rel
    if not folder.is_dir() or not Path(os.path.realpath(folder)).is_relative_to(os.path.realpath(path)):
        raise SpecError(
            f"repos/{spec.name}/config.yml",
            [(field, f"{rel!r} is not a folder in the repository at {commit[:12]}")],
        )


def with_detected_code_source(spec: RepoSpec, checkout: Path, location: bool = False) -> tuple[RepoSpec, dict[str, Any]]:
    """``spec`` completed with the code source found in its checkout (inside its working directory): one
    code source, or the several ``locations`` the repository declares (each with its own folder).
    ``location``: ``spec`` is one location of a repository with several (it needs one code source)."""
    try:
        found = detect(checkout / (spec.working_directory or "."))
    except DetectionError as exc:
        raise DetectionError(f"{spec.name}: {exc}") from None
    if location:
        if "locations" in found:
            raise DetectionError(
                f"{spec.name}: its folder {spec.working_directory or '.'!r} declares several locations itself; give the "
                "location its own folder, or its python_file/module_name, in config.yml"
            )
        if spec.working_directory:
            found["working_directory"] = "/".join(p for p in (spec.working_directory, found.get("working_directory")) if p)
        try:  # the repository's own files: validated as config.yml's location fields are
            LocationSpec.model_validate({"name": "detected", **found})
        except ValidationError as exc:
            raise DetectionError(f"{spec.name}: the detected code source {found} is not usable: {exc.errors()[0]['msg']}") from None
        return spec.model_copy(update=found), found
    if "locations" in found:
        if spec.working_directory:
            for loc in found["locations"]:
                loc["working_directory"] = posixpath.normpath(posixpath.join(spec.working_directory, loc.get("working_directory") or "."))
        data = {k: v for k, v in spec.to_config().items() if k != "working_directory"}
        return parse_spec({**data, **found}, f"{spec.name} (detected locations)"), found
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
