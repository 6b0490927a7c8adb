"""What the deployer keeps per repo once it serves: its record, its workspace entry, its config.yml.

    record (state/<name>.json) ──► workspace.yaml (rendered from every record) ──► config.yml

:class:`Registry` changes the records and workspace.yaml together, under the
workspace lock, so the file is always the rendering of the records: a record
is stored only once workspace.yaml points at its version, and removed with its
entry. ``config.yml`` (the desired state, with a detected code source filled
in) is written once a deploy serves, so a failed deploy leaves no file for the
sensor to retry, and deleted with the repo.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from meta_deployer import workspace as ws
from meta_deployer.errors import SpecError
from meta_deployer.model import Log
from meta_deployer.settings import Settings
from meta_deployer.spec import RepoSpec, config_path, dump_spec, load_spec
from meta_deployer.state import Deployment, StateStore


class Registry:
    """Deployment records and the workspace.yaml rendered from them, plus the repos' config files."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = StateStore(settings.state_dir)

    def get(self, name: str) -> Deployment | None:
        """The record of ``name``, or None when it is not deployed."""
        return self.store.get(name)

    def all(self) -> dict[str, Deployment]:
        """Every record, by name."""
        return self.store.all()

    def update(self, put: Deployment | None = None, delete: str | None = None) -> bool:
        """Store ``put`` / drop ``delete`` and re-render workspace.yaml; True when the file changed."""
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

    # -- config.yml ------------------------------------------------------------
    def _shown(self, path: Path) -> Path:
        root = self.settings.root
        return path.relative_to(root) if path.is_relative_to(root) else path

    def write_config(self, spec: RepoSpec, log: Log) -> None:
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
        log(f"wrote {self._shown(path)}")

    def delete_config(self, name: str, log: Log) -> None:
        """Delete ``repos/<name>/config.yml`` (and its folder when empty)."""
        path = config_path(self.settings.repos_dir, name)
        if path.is_file():
            path.unlink()
            try:
                path.parent.rmdir()
            except OSError:
                pass
            log(f"deleted {path}")
