"""Scan ``repos/*/config.yml`` (pure apart from reading files).

The sensor and ``sync-repos`` both start here. Each file is hashed by its
bytes; a file whose hash the caller already knows is not parsed again, so a
steady-state sensor tick over many repos costs one read and one hash each.
One bad file (unreadable, too big, not UTF-8, expanding YAML...) is reported
and never stops the others; no file is read beyond ``MAX_CONFIG_BYTES``.
With ``confine`` (the configuration repository's checkout), a file or folder
that is a symbolic link resolving outside it is reported and never read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meta_deployer import naming
from meta_deployer.errors import SpecError
from meta_deployer.spec import CONFIG_FILENAME, RepoSpec, read_config_bytes, spec_from_bytes


@dataclass(frozen=True)
class ScannedConfig:
    """One config file: its content hash, and its spec or the error that stops it."""

    name: str
    path: Path
    content_hash: str
    spec: RepoSpec | None = None
    error: str | None = None
    known: bool = False  # the hash was already known: not parsed again


def scan_repo_configs(
    repos_dir: Path, known: Mapping[str, str] | None = None, confine: Path | None = None
) -> dict[str, ScannedConfig]:
    """``{folder name: ScannedConfig}`` for every ``<repos_dir>/*/config.yml``; with ``confine``, only
    files whose real path lies inside that folder are read (the others are reported)."""
    known = known or {}
    result: dict[str, ScannedConfig] = {}
    if not repos_dir.is_dir():
        return result
    boundary = Path(os.path.realpath(confine)) if confine is not None else None
    for path in sorted(repos_dir.glob(f"*/{CONFIG_FILENAME}")):
        name = path.parent.name
        if boundary is not None and not Path(os.path.realpath(path)).is_relative_to(boundary):
            link = path if path.is_symlink() else path.parent
            target = f" (-> {os.readlink(link)!r})" if link.is_symlink() else ""
            result[name] = ScannedConfig(
                name, path, "", error=f"{link}: is a symbolic link that leaves the configuration repository"
                f"{target}; commit the file itself",
            )
            continue
        try:
            data = read_config_bytes(path)
        except SpecError as exc:
            result[name] = ScannedConfig(name, path, "", error=str(exc))
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
            result[name] = ScannedConfig(name, path, digest, spec=spec_from_bytes(data, str(path), expected_name=name))
        except SpecError as exc:
            result[name] = ScannedConfig(name, path, digest, error=str(exc))
        except Exception as exc:  # a loader bug on one file must not hide the others: report it
            result[name] = ScannedConfig(name, path, digest, error=f"{path}: cannot be loaded: {type(exc).__name__}: {exc}"[:2000])
    # A location deploys as <repo>-<location>: that name must not be another repo's folder.
    for name, item in list(result.items()):
        if item.spec is not None and item.spec.locations:
            clash = [part.name for part in item.spec.location_specs() if part.name in result]
            if clash:
                result[name] = ScannedConfig(
                    name, item.path, item.content_hash,
                    error=f"{item.path}: locations deploy as {', '.join(clash)}, which repos/ already holds as a repo of "
                    "its own; rename the location",
                )
    return result
