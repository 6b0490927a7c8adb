"""What the deployer keeps per repo once it serves: its record, its workspace entry, its config.yml.

    record (state/<name>.json, or system/deployments/<name>.json in the bucket)
        ──► workspace.yaml (rendered from every record) ──► config.yml

:class:`Registry` changes the records and workspace.yaml together, under the
workspace lock, so the file is always the rendering of the records: a record
is stored only once workspace.yaml points at its version, and removed with its
entry. ``config.yml`` (the desired state, with a detected code source filled
in) is written once a deploy serves, so a failed deploy leaves no file for the
sensor to retry, and deleted with the repo.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any


from meta_deployer import workspace as ws
from meta_deployer.errors import SpecError
from meta_deployer.model import Log
from meta_deployer.settings import Settings
from meta_deployer.spec import RepoSpec, config_path, dump_spec, load_spec, spec_from_bytes
from meta_deployer.state import CURRENT, Deployment, RecordConflict, RecordStore, Versioned, record_store


class Registry:
    """Deployment records and the workspace.yaml rendered from them, plus the repos' config files."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store: RecordStore = record_store(settings)

    def read(self, name: str) -> Versioned:
        """The record of ``name`` with its version, for a later ``update(put=..., expected=version)``."""
        return self.store.read(name)

    def get(self, name: str) -> Deployment | None:
        """The record of ``name``, or None when it is not deployed."""
        return self.store.get(name)

    def all(self) -> dict[str, Deployment]:
        """Every record, by name."""
        return self.store.all()

    def update(self, put: Deployment | None = None, delete: str | None = None, expected: str | None = CURRENT) -> bool:
        """Store ``put`` / drop ``delete`` and re-render workspace.yaml; True when the file changed.

        ``expected`` is the version of the record the caller read (``read``): when another writer changed it
        since, nothing of ours is stored, workspace.yaml is rendered again from the records as they are
        (the winner's), and RecordConflict says who won.
        """
        path = self.settings.workspace
        with ws.lock_for(path):
            try:
                return self._update(path, put, delete, expected)
            except RecordConflict:
                self._update(path, None, None, CURRENT)
                raise

    def _update(self, path: Path, put: Deployment | None, delete: str | None, expected: str | None) -> bool:
        records, corrupt = self.store.scan()
        entries = {n: r.workspace_entry for n, r in records.items()}
        # A repo whose record is corrupt keeps the entry it has: it still serves until its next
        # deploy repairs the record, and a deploy of another repo must not drop it.
        current = ws.read_entries(path) if path.is_file() else {}
        for name in corrupt:
            if name in current:
                entries[name] = current[name]
        if put is not None:
            entries[put.name] = put.workspace_entry
        if delete is not None:
            entries.pop(delete, None)
        changed = ws.write_if_changed(path, ws.render(entries, self.settings.self_server))
        if put is not None:
            self.store.put(put, expected)
        if delete is not None:
            self.store.delete(delete, expected)
        return changed

    # -- config.yml ------------------------------------------------------------
    def _shown(self, path: Path) -> Path:
        root = self.settings.root
        return path.relative_to(root) if path.is_relative_to(root) else path

    def _from_git(self, log: Log, what: str) -> bool:
        """True (and says so) when the configs live in the configuration repository, not here."""
        if not self.settings.config_git_url:
            return False
        log(f"{what}: configs come from the configuration repository (META_DEPLOYER_CONFIG_GIT_URL), changed by commits")
        return True

    def write_config(self, spec: RepoSpec, log: Log) -> None:
        """Write config.yml when it is missing or says something else (atomically).

        An existing file is edited, not rewritten: only the keys whose values changed (typically the
        detected code source) are set, so the user's comments, order and layout stay as they were.
        """
        if self._from_git(log, f"config.yml of {spec.name} not written"):
            return
        path = config_path(self.settings.repos_dir, spec.name)
        text = None
        if path.is_file():
            try:
                current = load_spec(path)
            except SpecError:
                current = None
            if current == spec:
                return
            if current is not None:
                text = _edited(path.read_text(encoding="utf-8"), current.to_config(), spec.to_config())
                if text is not None and not _parses_to(text, path, spec):
                    text = None
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, prefix=".config-", suffix=".tmp") as tmp:
            tmp.write(text if text is not None else dump_spec(spec))
        os.replace(tmp.name, path)
        log(f"wrote {self._shown(path)}")

    def delete_config(self, name: str, log: Log) -> None:
        """Delete ``repos/<name>/config.yml`` (and its folder when empty)."""
        if self._from_git(log, f"config.yml of {name} left as it is"):
            return
        path = config_path(self.settings.repos_dir, name)
        if path.is_file():
            path.unlink()
            try:
                path.parent.rmdir()
            except OSError:
                pass
            log(f"deleted {path}")


def _edited(text: str, current: dict[str, Any], target: dict[str, Any]) -> str | None:
    """``text`` with only the top-level keys that differ between ``current`` and ``target`` changed
    (ruamel.yaml round trip: comments and order kept); None when it cannot be edited in place."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML()  # round-trip mode
    yaml.preserve_quotes = True
    try:
        doc = yaml.load(text)
    except YAMLError:
        return None
    if not isinstance(doc, dict):
        return None
    for key in [k for k in current if k not in target]:
        doc.pop(key, None)
    for key, value in target.items():
        if current.get(key) != value:
            doc[key] = value
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _parses_to(text: str, path: Path, spec: RepoSpec) -> bool:
    """True when ``text`` is a config.yml for exactly ``spec``."""
    try:
        return spec_from_bytes(text.encode("utf-8"), str(path), expected_name=spec.name) == spec
    except SpecError:
        return False
