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
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from filelock import FileLock

import meta_deployer
from meta_deployer import gitops, naming, snapshot
from meta_deployer import workspace as ws
from meta_deployer.detect import detect_code_source
from meta_deployer.errors import DetectionError, NotDeployedError, SpecError
from meta_deployer.platforms import get_platform
from meta_deployer.platforms.base import Artifact, Checkout, Log, Platform, Published, Served
from meta_deployer.settings import Settings
from meta_deployer.spec import RepoSpec, config_path, dump_spec, load_spec, parse_spec
from meta_deployer.state import Deployment, StateStore
from meta_deployer.webserver import ReloadResult, reload_location, reload_workspace


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


@dataclass(frozen=True)
class RemoveResult:
    name: str
    removed: bool
    workspace_changed: bool


class Deployer:
    """Runs the deploy steps for one settings/platform pair."""

    def __init__(self, settings: Settings | None = None, platform: Platform | None = None):
        self.settings = settings or Settings.from_env()
        self.platform = platform or get_platform(self.settings)
        self.store = StateStore(self.settings.state_dir)

    # -- spec ----------------------------------------------------------------
    def spec_from_file(self, name: str) -> RepoSpec:
        path = config_path(self.settings.repos_dir, name)
        if not path.is_file():
            raise NotDeployedError(f"{path} does not exist; add the repo first (make add-repo REPO_URL=... REPO_NAME={name})")
        return load_spec(path)

    def _write_config(self, spec: RepoSpec, log: Log) -> None:
        """Write config.yml when it is missing or says something else (atomic; comments kept otherwise)."""
        path = config_path(self.settings.repos_dir, spec.name)
        if path.is_file():
            try:
                if load_spec(path) == spec:
                    return
            except SpecError:
                pass
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, prefix=".config-", suffix=".tmp") as tmp:
            tmp.write(dump_spec(spec))
        os.replace(tmp.name, path)
        log(f"wrote {path.relative_to(self.settings.root) if path.is_relative_to(self.settings.root) else path}")

    def fingerprint(self, spec: RepoSpec, commit: str) -> str:
        data = "|".join(
            [commit, spec.content_hash(), self.platform.name, self.platform.settings_fingerprint(spec), meta_deployer.__version__]
        )
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    # -- steps ---------------------------------------------------------------
    def checkout(self, spec: RepoSpec, log: Log = _print) -> DeployState:
        """Converge the checkout, complete the spec, and decide whether anything must change."""
        started = time.time()
        auth = self.settings.git_auth()
        url = gitops.resolve_url(spec.git_url, self.settings.root)
        commit, changed = gitops.converge(url, spec.branch, self.settings.checkout_path(spec.name), auth)
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
            spec, found = _with_detected_code_source(spec, path)
            log(f"{spec.name}: detected code source {found}")
        self._check_code_source_exists(spec, path)
        checkout = Checkout(spec.name, path, commit, spec.branch, shown_url, changed)
        fingerprint = self.fingerprint(spec, commit)
        record = self.store.get(spec.name)
        unchanged = (
            record is not None
            and record.fingerprint == fingerprint
            and self.platform.is_serving(spec.name, asdict(record))
        )
        if unchanged:
            log(f"{spec.name}: {commit[:12]} with this spec already serves on {self.platform.name}; nothing to do")
        return DeployState(spec, checkout, fingerprint, unchanged, started)

    def _check_code_source_exists(self, spec: RepoSpec, path: Path) -> None:
        wd = path / (spec.working_directory or ".")
        if spec.python_file and not (wd / spec.python_file).is_file():
            raise SpecError(
                f"repos/{spec.name}/config.yml",
                [("python_file", f"{spec.python_file!r} does not exist in the repository (relative to {spec.working_directory or 'the repository root'})")],
            )

    def build(self, state: DeployState, log: Log = _print) -> DeployState:
        if state.unchanged:
            return state
        return replace(state, artifact=self.platform.build(state.spec, state.checkout, log))

    def publish(self, state: DeployState, log: Log = _print) -> DeployState:
        if state.unchanged:
            return state
        assert state.artifact is not None
        return replace(state, published=self.platform.publish(state.spec, state.artifact, log))

    def serve(self, state: DeployState, log: Log = _print) -> DeployState:
        if state.unchanged:
            return state
        assert state.published is not None
        return replace(state, served=self.platform.serve(state.spec, state.published, state.checkout, log))

    def switch(self, state: DeployState, log: Log = _print) -> DeployState:
        """Point workspace.yaml at the new version, record it, then retire the old version."""
        record = self.store.get(state.spec.name)
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
                spec_hash=state.spec.content_hash(),
                deployed_at=time.time(),
                duration_s=round(time.time() - state.started_at, 3),
                metadata={**state.artifact.metadata, **state.published.metadata, **state.served.metadata},
            )
        assert record is not None
        changed = self._update_workspace(put=record)
        # config.yml records the desired state (with a detected code source) once it serves:
        # a deploy that fails leaves no file behind for the sensor to retry.
        self._write_config(state.spec, log)
        if not state.unchanged:
            assert state.served is not None
            self.platform.after_switch(state.spec, state.served, log)
        log(f"workspace.yaml {'updated' if changed else 'unchanged'}")
        return replace(state, record=record, workspace_changed=changed)

    def _update_workspace(self, put: Deployment | None = None, delete: str | None = None) -> bool:
        path = self.settings.workspace
        with ws.lock_for(path):
            records = self.store.all()
            if put is not None:
                records[put.name] = put
            if delete is not None:
                records.pop(delete, None)
            changed = ws.write_if_changed(path, ws.render({n: r.workspace_entry for n, r in records.items()}))
            if put is not None:
                self.store.put(put)
            if delete is not None:
                self.store.delete(delete)
            return changed

    def render_workspace(self) -> bool:
        """Re-render workspace.yaml from the records (``make dev`` does this first)."""
        return self._update_workspace()

    def reload(self, changed: bool, log: Log = _print, location: str | None = None) -> ReloadResult | None:
        """Reload the webserver: the whole workspace when workspace.yaml changed, only ``location``
        when its entry stayed the same but a new version serves behind it. No webserver is a
        warning only."""
        url, timeout = self.settings.webserver_url, self.settings.reload_timeout_s
        if changed:
            result = reload_workspace(url, timeout)
        elif location is not None:
            result = reload_location(url, location, timeout)
        else:
            log("nothing changed; no reload needed")
            return None
        log(result.message)
        for name, status in result.locations.items():
            if status.startswith("ERROR"):
                log(f"warning: location {name} reports {status}")
        return result

    def deploy(self, spec: RepoSpec, log: Log = _print) -> DeployState:
        """All steps in order (the CLI and benchmarks; the jobs run them as ops)."""
        state = self.checkout(spec, log)
        for step in (self.build, self.publish, self.serve, self.switch):
            state = step(state, log)
        self.reload_after(state, log)
        return state

    def reload_after(self, state: DeployState, log: Log = _print) -> ReloadResult | None:
        """The reload a deploy needs: none when nothing changed."""
        return self.reload(state.workspace_changed, log, location=None if state.unchanged else state.spec.name)

    def remove(self, name: str, purge: bool = False, log: Log = _print) -> RemoveResult:
        """Stop serving ``name``, drop it from the workspace, delete its checkout and config.

        Data (storage, logs, and on AWS log groups and images) is kept unless ``purge``.
        """
        naming.validate_name(name)
        record = self.store.get(name)
        self.platform.stop(name, purge, log)
        changed = self._update_workspace(delete=name)
        checkout = self.settings.checkout_path(name)
        with FileLock(str(checkout) + ".lock", timeout=600):
            if checkout.exists():
                shutil.rmtree(checkout)
                log(f"deleted checkout {checkout}")
        path = config_path(self.settings.repos_dir, name)
        if path.is_file():
            path.unlink()
            try:
                path.parent.rmdir()
            except OSError:
                pass
            log(f"deleted {path}")
        removed = record is not None or changed
        if removed:
            log(f"{name}: removed")
        else:
            known = ", ".join(sorted(self.store.all())) or "none"
            log(f"{name}: nothing is deployed under this name, nothing to do (deployed: {known})")
        Path(str(checkout) + ".lock").unlink(missing_ok=True)
        return RemoveResult(name, removed, changed)

    # -- dry run -----------------------------------------------------------------
    def dry_run(self, spec: RepoSpec) -> str:
        """What a deploy of ``spec`` would do, changing nothing (no clone into the work area,
        no build, no workspace write): the pinned commit, then the platform's own plan."""
        auth = self.settings.git_auth()
        url = gitops.resolve_url(spec.git_url, self.settings.root)
        commit = gitops.remote_head(url, spec.branch, auth)
        lines = [f"{spec.name}: {gitops.redact(spec.git_url, auth.secrets)} {spec.branch} is at {commit[:12]}"]
        with tempfile.TemporaryDirectory(prefix="meta-deployer-dry-run-") as tmp:
            path = self.settings.checkout_path(spec.name)
            if spec.code_source is None:
                path = Path(tmp) / spec.name
                gitops.converge(url, spec.branch, path, auth)
                spec, found = _with_detected_code_source(spec, path)
                lines.append(f"would write the detected code source into config.yml: {found}")
            record = self.store.get(spec.name)
            if record is not None and record.fingerprint == self.fingerprint(spec, commit) and self.platform.is_serving(spec.name, asdict(record)):
                lines.append("nothing to do: this commit with this config already serves")
                return "\n".join(lines)
            checkout = Checkout(spec.name, path, commit, spec.branch, gitops.redact(spec.git_url, auth.secrets), True)
            lines.append(self.platform.dry_run(spec, checkout))
        lines.append("would write workspace.yaml and reload the webserver")
        return "\n".join(lines)

    def dry_run_remove(self, name: str, purge: bool = False) -> str:
        """What ``remove`` would do, changing nothing."""
        naming.validate_name(name)
        record = self.store.get(name)
        lines = [self.platform.dry_run_removal(name, purge)]
        if record is not None:
            lines.append(f"would remove {name} from workspace.yaml, delete its checkout and config.yml, and reload")
        return "\n".join(lines)

    # -- sync ------------------------------------------------------------------
    def moved(self, log: Log = _print) -> tuple[list[RepoSpec], list[str]]:
        """Specs whose branch head, spec or platform differ from what is deployed; and the problems."""
        from meta_deployer.scan import scan_repo_configs

        auth = self.settings.git_auth()
        moved, problems = [], []
        configs = scan_repo_configs(self.settings.repos_dir)
        for name, scanned in sorted(configs.items()):
            if scanned.error:
                problems.append(scanned.error)
                log(f"skipped: {scanned.error}")
                continue
            spec = scanned.spec
            assert spec is not None
            record = self.store.get(name)
            try:
                head = gitops.remote_head(gitops.resolve_url(spec.git_url, self.settings.root), spec.branch, auth)
            except Exception as exc:  # one unreachable remote must not stop the others
                problems.append(f"{name}: {exc}")
                log(f"skipped {name}: {exc}")
                continue
            reason = None
            if record is None:
                reason = "not deployed"
            elif record.commit != head:
                reason = f"{record.commit[:12]} -> {head[:12]}"
            elif record.spec_hash != spec.content_hash() or record.platform != self.platform.name:
                reason = "config.yml or platform changed"
            elif not self.platform.is_serving(name, asdict(record)):
                reason = "no longer serving"
            if reason:
                log(f"{name}: {reason}")
                moved.append(spec)
            else:
                log(f"{name}: up to date at {head[:12]}")
        for name in sorted(set(self.store.all()) - set(configs)):
            log(f"{name}: deployed but has no config.yml; run remove-repo REPO_NAME={name} to remove it")
        return moved, problems


def _with_detected_code_source(spec: RepoSpec, checkout: Path) -> tuple[RepoSpec, dict[str, str]]:
    """``spec`` completed with the code source found in its checkout (inside its working directory)."""
    try:
        found = detect_code_source(checkout / (spec.working_directory or "."))
    except DetectionError as exc:
        raise DetectionError(f"{spec.name}: {exc}") from None
    if spec.working_directory:
        found["working_directory"] = "/".join(p for p in (spec.working_directory, found.get("working_directory")) if p)
    return parse_spec({**spec.to_config(), **found}, f"{spec.name} (detected code source)"), found


def deployment_summary(record: Deployment | None) -> dict[str, Any]:
    """Materialization metadata for a deploy: commit, platform, artifact, endpoint, duration."""
    if record is None:
        return {}
    return {
        "commit": record.commit,
        "branch": record.branch,
        "git_url": record.git_url,
        "platform": record.platform,
        "artifact": record.artifact,
        "digest": record.digest or "",
        "endpoint": record.endpoint,
        "duration_s": record.duration_s,
    }
