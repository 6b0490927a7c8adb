"""Deployment records: what is deployed now, one JSON file per repo.

A record is written only after a version is serving and the workspace points
at it, so the set of records is the deployed state that workspace.yaml is
rendered from. Platforms with state of their own (docker labels, AWS tags)
can rebuild missing records through ``Platform.observe`` (adoption).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from meta_deployer import naming


@dataclass(frozen=True)
class Deployment:
    """One deployed code location."""

    name: str
    git_url: str  # redacted
    branch: str
    commit: str
    platform: str
    artifact: str  # venv path or image reference
    endpoint: str
    workspace_entry: dict[str, Any]
    fingerprint: str  # commit + spec + platform settings; equal means nothing to do
    spec_hash: str
    deployed_at: float
    duration_s: float
    digest: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


class StateStore:
    """Reads and writes deployment records under ``<work_dir>/state``."""

    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, name: str) -> Path:
        return self.directory / f"{naming.validate_name(name)}.json"

    def get(self, name: str) -> Deployment | None:
        path = self._path(name)
        try:
            return Deployment(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def all(self) -> dict[str, Deployment]:
        if not self.directory.is_dir():
            return {}
        records = {}
        for path in sorted(self.directory.glob("*.json")):
            if naming.name_problem(path.stem) is None:
                records[path.stem] = Deployment(**json.loads(path.read_text()))
        return records

    def put(self, record: Deployment) -> None:
        """Write ``record`` atomically."""
        path = self._path(record.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(record.to_json())
        os.replace(tmp.name, path)

    def delete(self, name: str) -> bool:
        try:
            self._path(name).unlink()
            return True
        except FileNotFoundError:
            return False
