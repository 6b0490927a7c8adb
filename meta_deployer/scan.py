"""Scan ``repos/*/config.yml`` (pure apart from reading files).

The sensor and ``sync-repos`` both start here. Each file is hashed by its
bytes; a file whose hash the caller already knows is not parsed again, so a
steady-state sensor tick over many repos costs one read and one hash each.
One bad file is reported and never stops the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meta_deployer import naming
from meta_deployer.errors import SpecError
from meta_deployer.spec import CONFIG_FILENAME, RepoSpec, load_spec


@dataclass(frozen=True)
class ScannedConfig:
    """One config file: its content hash, and its spec or the error that stops it."""

    name: str
    path: Path
    content_hash: str
    spec: RepoSpec | None = None
    error: str | None = None
    known: bool = False  # the hash was already known: not parsed again


def scan_repo_configs(repos_dir: Path, known: Mapping[str, str] | None = None) -> dict[str, ScannedConfig]:
    """``{folder name: ScannedConfig}`` for every ``<repos_dir>/*/config.yml``."""
    known = known or {}
    result: dict[str, ScannedConfig] = {}
    if not repos_dir.is_dir():
        return result
    for path in sorted(repos_dir.glob(f"*/{CONFIG_FILENAME}")):
        name = path.parent.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            result[name] = ScannedConfig(name, path, "", error=f"{path}: cannot be read: {exc.strerror}")
            continue
        digest = hashlib.sha256(data).hexdigest()[:16]
        if known.get(name) == digest:
            result[name] = ScannedConfig(name, path, digest, known=True)
            continue
        problem = naming.name_problem(name)
        if problem:
            result[name] = ScannedConfig(name, path, digest, error=f"{path}: folder name {problem}")
            continue
        try:
            result[name] = ScannedConfig(name, path, digest, spec=load_spec(path))
        except SpecError as exc:
            result[name] = ScannedConfig(name, path, digest, error=str(exc))
    return result
