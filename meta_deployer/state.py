"""Deployment records: what is deployed now, one JSON document per repo.

A record is written only after a version is serving and the workspace points
at it, so the set of records is the deployed state that workspace.yaml is
rendered from. Platforms with state of their own (docker labels, AWS tags)
can rebuild missing records through ``Platform.observe`` (adoption).

Every store answers the same small interface (:class:`RecordStore`); this
module holds the local one, files under ``<work_dir>/state`` (:class:`StateStore`),
and ``meta_deployer.s3state`` the shared one in the storage bucket. Writes are
compare-and-swap: :meth:`RecordStore.read` gives a record with its *version*
(a content hash here, the ETag in S3), and ``put(record, expected=version)``
writes only when the stored record is still that version, so two writers that
read the same record cannot both win: the loser gets :class:`RecordConflict`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from filelock import FileLock

from meta_deployer import naming
from meta_deployer.errors import MetaDeployerError

if TYPE_CHECKING:
    from meta_deployer.settings import Settings


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
    #: Mounted code: the commit's archive (``s3://…`` or a local path) and its sha256; None otherwise.
    code_archive: str | None = None
    code_sha256: str | None = None
    #: The repo this is one location of (config.yml ``locations:``); None for a repo's only location.
    parent: str | None = None

    @property
    def repo(self) -> str:
        """The repository (config.yml) this location belongs to."""
        return self.parent or self.name

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


#: A record is a few KiB; anything much larger is not one of ours.
MAX_RECORD_BYTES = 1 << 20


class CorruptRecord(ValueError):
    """A record file exists but is not a deployment record (truncated, emptied, edited...)."""


class RecordConflict(MetaDeployerError):
    """A record changed between its read and this write: another deploy wrote it (it won; run again)."""


class _Current:
    def __repr__(self) -> str:
        return "CURRENT"


#: ``expected=CURRENT``: the caller read nothing; the store reads the version itself just before writing.
CURRENT: Any = _Current()


class Versioned(NamedTuple):
    """A record as read: ``record`` is None when missing or corrupt; ``version`` is None only when missing."""

    record: Deployment | None
    version: str | None


def parse_record(raw: bytes, name: str) -> Deployment:
    """The record in ``raw`` (the stored bytes of ``name``'s record); CorruptRecord when it is not one."""
    try:
        if len(raw) > MAX_RECORD_BYTES:
            raise CorruptRecord(f"larger than {MAX_RECORD_BYTES} bytes")
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("name") != name:
            raise CorruptRecord("does not describe this repo")
        record = Deployment(**data)
        if not isinstance(record.workspace_entry, dict) or not isinstance(record.fingerprint, str):
            raise CorruptRecord("has fields of the wrong type")
        return record
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise CorruptRecord(f"{type(exc).__name__}: {exc}") from None


def corrupt_message(where: str, name: str, problem: object) -> str:
    """How ``list-repos`` and the logs name a corrupt record (the same for every store)."""
    return f"{where}: corrupt deployment record ({problem}); the next deploy of {name} rewrites it"


def conflict_message(name: str, where: str, current: Deployment | None) -> str:
    """What a writer that lost the race on ``name``'s record is told."""
    now = (
        f"it now records commit {current.commit[:12]} on {current.platform} (fingerprint {current.fingerprint})"
        if current is not None
        else "it is now missing or unreadable"
    )
    return (
        f"{name}: the deployment record {where} changed after this deploy read it (another deploy of {name} wrote it); "
        f"{now}. Nothing was overwritten: deploy {name} again to converge"
    )


class RecordStore(Protocol):
    """Where deployment records live (local files or the storage bucket): the same rules for both.

    A corrupt record affects only its own repo: ``get`` answers None for it (so its next deploy
    starts afresh and rewrites the record), ``all`` leaves it out, and ``corrupt`` names it and says
    what is wrong, for ``list-repos`` and for keeping its workspace entry as it was.
    """

    def where(self, name: str) -> str:
        """Where ``name``'s record is kept (a path or an ``s3://`` URL), for messages."""

    def read(self, name: str) -> Versioned: ...

    def get(self, name: str) -> Deployment | None: ...

    def all(self) -> dict[str, Deployment]: ...

    def corrupt(self) -> dict[str, str]: ...

    def scan(self) -> tuple[dict[str, Deployment], dict[str, str]]:
        """``(all(), corrupt())`` in one pass."""

    def put(self, record: Deployment, expected: str | None = CURRENT) -> str:
        """Store ``record`` if the stored one is still version ``expected`` (None: none may exist); the new version.
        Writing the bytes already stored is a no-op. RecordConflict when another writer got there first."""

    def delete(self, name: str, expected: str | None = CURRENT) -> bool: ...


def record_store(settings: "Settings") -> RecordStore:
    """The records of ``settings``' state backend (``Settings.state_backend``): local files or the bucket."""
    if settings.state_backend == "s3":
        from meta_deployer.s3state import S3Records, gateway_for

        return S3Records(gateway_for(settings), settings.bucket)
    return StateStore(settings.state_dir)


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class StateStore:
    """The local :class:`RecordStore`: one JSON file per repo under ``<work_dir>/state``.

    Compare-and-swap holds under a lock file in the same folder (one machine: the dev and docker
    platforms without a bucket); a record's version is the hash of its bytes.
    """

    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, name: str) -> Path:
        return self.directory / f"{naming.validate_name(name)}.json"

    def where(self, name: str) -> str:
        return str(self._path(name))

    def _raw(self, path: Path) -> bytes | None:
        try:
            with path.open("rb") as fh:
                return fh.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            return None

    def read(self, name: str) -> Versioned:
        """``name``'s record and its version (see :class:`Versioned`)."""
        raw = self._raw(self._path(name))
        if raw is None:
            return Versioned(None, None)
        try:
            return Versioned(parse_record(raw, name), _digest(raw))
        except CorruptRecord:
            return Versioned(None, _digest(raw))

    def get(self, name: str) -> Deployment | None:
        """The record of ``name``; None when there is none or it is corrupt."""
        return self.read(name).record

    def _paths(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in sorted(self.directory.glob("*.json")) if naming.name_problem(p.stem) is None]

    def all(self) -> dict[str, Deployment]:
        """Every readable record, by name (corrupt ones are left out: see :meth:`corrupt`)."""
        records = {}
        for path in self._paths():
            try:
                raw = self._raw(path)
                if raw is not None:
                    records[path.stem] = parse_record(raw, path.stem)
            except CorruptRecord:
                continue
        return records

    def corrupt(self) -> dict[str, str]:
        """``{name: what is wrong}`` for every record file that cannot be read as a record."""
        found = {}
        for path in self._paths():
            try:
                raw = self._raw(path)
                if raw is not None:
                    parse_record(raw, path.stem)
            except (CorruptRecord, OSError) as exc:
                found[path.stem] = corrupt_message(str(path), path.stem, exc)
        return found

    def scan(self) -> tuple[dict[str, Deployment], dict[str, str]]:
        """``(all(), corrupt())``."""
        return self.all(), self.corrupt()

    def _lock(self) -> FileLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.directory / ".records.lock"))

    def _check(self, name: str, path: Path, expected: str | None) -> bytes | None:
        raw = self._raw(path)
        if expected is not CURRENT and (None if raw is None else _digest(raw)) != expected:
            current = self.read(name).record
            raise RecordConflict(conflict_message(name, str(path), current))
        return raw

    def put(self, record: Deployment, expected: str | None = CURRENT) -> str:
        """Write ``record`` atomically if the file is still version ``expected`` (see :class:`RecordStore`)."""
        path = self._path(record.name)
        data = record.to_json().encode("utf-8")
        with self._lock():
            if self._check(record.name, path, expected) == data:
                return _digest(data)
            with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False, suffix=".tmp") as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        return _digest(data)

    def delete(self, name: str, expected: str | None = CURRENT) -> bool:
        """Delete ``name``'s record if it is still version ``expected``; False when there was none."""
        path = self._path(name)
        with self._lock():
            if self._check(name, path, expected) is None:
                return False
            path.unlink()
            return True
