"""The location entry point: loads a repo's own definitions inside its code server.

The deployer never edits a repo's code. Instead each location is served
through this wrapper, which

- sets the location's environment: the spec's ``environment`` plus the
  injected ``META_DEPLOYER_REPO``, ``META_DEPLOYER_PREFIX`` and storage
  settings (``dagster dev`` has no per-location environment, so the dev
  platform needs this route);
- with mounted code, fetches the commit's code archive, checks its sha256 and
  serves from the unpacked copy (``meta_deployer_runtime.code``);
- copies the code server's output into the repo's log file (``repo-logs``);
- loads the repo's definitions from its code source and, where the repo sets
  no ``io_manager`` of its own, gives it the prefix-enforcing one
  (``meta_deployer_runtime.io``).

It runs inside the repo's own environment, so it imports only dagster and the
standard library at module level.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from meta_deployer_runtime.contract import (
    CODE_SOURCE_ENV,
    ENV_CODE_ARCHIVE,
    ENV_REPO,
    LOCATION_CONFIG_ENV,
    WORKING_DIRECTORY_ENV,
    without_deployer_secrets,
)


class _Tee:
    """Write to the original stream and to the repo's log file."""

    def __init__(self, stream: TextIO, copy: TextIO):
        self._stream, self._copy = stream, copy

    def write(self, text: str) -> int:
        self._copy.write(text)
        self._copy.flush()
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()
        self._copy.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _writes_to(stream: TextIO, path: str) -> bool:
    """True when ``stream`` already writes into ``path`` (a supervised dev server's output is its log file)."""
    try:
        mine, theirs = os.fstat(stream.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _capture_output(log_file: str) -> None:
    if isinstance(sys.stderr, _Tee) or _writes_to(sys.stderr, log_file):
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    copy = open(log_file, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    sys.stdout = _Tee(sys.stdout, copy)  # type: ignore[assignment]
    sys.stderr = _Tee(sys.stderr, copy)  # type: ignore[assignment]
    handler = logging.StreamHandler(copy)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s - %(message)s"))
    dagster_logger = logging.getLogger("dagster")
    # dagster's logger does not propagate to the root logger: attach to the one that sees the lines
    (dagster_logger if not dagster_logger.propagate else logging.getLogger()).addHandler(handler)


def _load_targets(kind: str, value: str, working_directory: str | None) -> dict[str, Any]:
    from dagster._core.workspace import autodiscovery

    if working_directory:
        # Dagster itself may already have put the working directory on sys.path: the src folder of a
        # src layout is added either way (the repo's package is not installed), at any depth.
        if working_directory not in sys.path:
            sys.path.insert(0, working_directory)
        src = os.path.join(working_directory, "src")
        if os.path.isdir(src) and src not in sys.path:
            sys.path.insert(sys.path.index(working_directory) + 1, src)
    if kind == "python_file":
        path = os.path.join(working_directory or os.getcwd(), value)
        targets = autodiscovery.loadable_targets_from_python_file(path, working_directory)
    elif kind == "module_name":
        targets = autodiscovery.loadable_targets_from_python_module(value, working_directory)
    elif kind == "package_name":
        targets = autodiscovery.loadable_targets_from_python_package(value, working_directory)
    else:
        raise ValueError(f"unknown code source kind {kind!r}")
    return {target.attribute: target.target_definition for target in targets}


class _RegisteredNameWins(logging.Filter):
    """Drops Dagster's warning that a dg project's folder-derived name differs from the location's
    name: the deployer registers every location under its own name (``<repo>`` or ``<repo>-<location>``),
    which Dagster then uses, so the warning (logged on every load) says nothing actionable."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("configured on this project does not match the name" in message and "registered under" in message)


def _quiet_location_name_warning() -> None:
    logger = logging.getLogger("dagster.components.core.component_tree")
    if not any(isinstance(f, _RegisteredNameWins) for f in logger.filters):
        logger.addFilter(_RegisteredNameWins())


def _wrap(targets: dict[str, Any]) -> dict[str, Any]:
    from meta_deployer_runtime.io import inject_into_target

    return {attr: inject_into_target(t) for attr, t in targets.items()}


def load(config: dict[str, Any]) -> dict[str, Any]:
    """Apply a location config and return the repo's loadable targets, wrapped."""
    for key in set(os.environ) - set(without_deployer_secrets(os.environ)):
        del os.environ[key]  # the deployer's own credentials never reach a repo's code
    for key, value in (config.get("environment") or {}).items():
        os.environ[key] = value
    if config.get("log_file"):
        _capture_output(config["log_file"])
    name = config.get("name", "?")
    working_directory = config.get("working_directory")
    if working_directory:
        os.chdir(working_directory)
    _quiet_location_name_warning()
    kind, value = config["code_source"]["kind"], config["code_source"]["value"]
    sys.stderr.write(f"meta_deployer: loading location {name} from {kind}={value} (commit {config.get('commit', '?')})\n")
    try:
        return _wrap(_load_targets(kind, value, working_directory))
    except BaseException:
        sys.stderr.write(f"meta_deployer: location {name} failed to load:\n{traceback.format_exc()}")
        raise


def load_file(config_path: str) -> dict[str, Any]:
    """Load a location from its JSON config file (dev platform)."""
    return load(json.loads(Path(config_path).read_text()))


def load_from_env() -> dict[str, Any]:
    """Load a location described by environment variables (container platforms)."""
    if os.environ.get(LOCATION_CONFIG_ENV):
        return load_file(os.environ[LOCATION_CONFIG_ENV])
    kind, _, value = os.environ.get(CODE_SOURCE_ENV, "").partition(":")
    if not value:
        raise RuntimeError(f"set {CODE_SOURCE_ENV}=<python_file|module_name|package_name>:<value>")
    # Relative to where the server runs (the image's WORKDIR) when a platform cannot set the
    # container's working directory per repo (ECS task definitions); docker sets it directly.
    # Mounted code: relative to the folder the commit's verified archive was unpacked into.
    root = os.getcwd()
    if os.environ.get(ENV_CODE_ARCHIVE):
        from meta_deployer_runtime.code import fetch_code

        try:
            root = str(fetch_code())
        except Exception as exc:
            sys.stderr.write(f"meta_deployer: location {os.environ.get(ENV_REPO, '?')} cannot start: {exc}\n")
            raise
    working_directory = os.path.normpath(os.path.join(root, os.environ.get(WORKING_DIRECTORY_ENV, ".")))
    if os.path.relpath(working_directory, root).startswith(".."):
        raise RuntimeError(f"{WORKING_DIRECTORY_ENV} leaves the code folder: {working_directory}")
    return load(
        {
            "name": os.environ.get(ENV_REPO, "?"),
            "code_source": {"kind": kind, "value": value},
            "working_directory": working_directory,
        }
    )
