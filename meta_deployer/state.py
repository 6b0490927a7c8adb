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


#: A record is a few KiB; anything much larger is not one of ours.
MAX_RECORD_BYTES = 1 << 20


class CorruptRecord(ValueError):
    """A record file exists but is not a deployment record (truncated, emptied, edited...)."""


def _read(path: Path) -> Deployment:
    """The record in ``path``; FileNotFoundError when missing, CorruptRecord when unreadable."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_RECORD_BYTES + 1)
        if len(raw) > MAX_RECORD_BYTES:
            raise CorruptRecord(f"larger than {MAX_RECORD_BYTES} bytes")
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("name") != path.stem:
            raise CorruptRecord("does not describe this repo")
        record = Deployment(**data)
        if not isinstance(record.workspace_entry, dict) or not isinstance(record.fingerprint, str):
            raise CorruptRecord("has fields of the wrong type")
        return record
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise CorruptRecord(f"{type(exc).__name__}: {exc}") from None


class StateStore:
    """Reads and writes deployment records under ``<work_dir>/state``.

    A corrupt record affects only its own repo: ``get`` answers None for it (so its next deploy
    starts afresh and rewrites the record), ``all`` leaves it out, and ``corrupt`` names it and says
    what is wrong, for ``list-repos`` and for keeping its workspace entry as it was.
    """

    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, name: str) -> Path:
        return self.directory / f"{naming.validate_name(name)}.json"

    def get(self, name: str) -> Deployment | None:
        """The record of ``name``; None when there is none or it is corrupt."""
        try:
            return _read(self._path(name))
        except (FileNotFoundError, CorruptRecord):
            return None

    def _paths(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in sorted(self.directory.glob("*.json")) if naming.name_problem(p.stem) is None]

    def all(self) -> dict[str, Deployment]:
        """Every readable record, by name (corrupt ones are left out: see :meth:`corrupt`)."""
        records = {}
        for path in self._paths():
            try:
                records[path.stem] = _read(path)
            except (FileNotFoundError, CorruptRecord):
                continue
        return records

    def corrupt(self) -> dict[str, str]:
        """``{name: what is wrong}`` for every record file that cannot be read as a record."""
        found = {}
        for path in self._paths():
            try:
                _read(path)
            except FileNotFoundError:
                continue
            except (CorruptRecord, OSError) as exc:
                found[path.stem] = f"{path}: corrupt deployment record ({exc}); the next deploy of {path.stem} rewrites it"
        return found

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
