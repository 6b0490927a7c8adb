"""Find a repository's code source when its config.yml names none.

Looked for in this order, in the repository root; the first place that names
a code source wins:

1. ``pyproject.toml``: ``[tool.dagster]`` (``module_name``/``python_file``) or
   ``[tool.dg.project]`` (``root_module``, ``code_location_target_module``);
2. ``dagster_cloud.yaml``: its single location's ``code_source``;
3. ``workspace.yaml``: its single ``load_from`` entry;
4. a single ``definitions.py`` anywhere outside tests and virtualenvs.

Nothing found, or more than one candidate in the winning place, is an error
that names the candidates. This module reads files only; it runs nothing.

The YAML files are the repository's own, so they are read as hostile input, with
the bounded loader of ``config.yml`` (:mod:`meta_deployer.spec`): at most
``MAX_CONFIG_BYTES`` (checked before reading), UTF-8 only, no anchors or aliases
(no "billion laughs"), no merge or duplicate keys, capped depth, list length and
value count. A file that breaks a rule is a :class:`DetectionError` naming it,
raised in well under a second.
"""

from __future__ import annotations

import os
import posixpath
import tomllib
from pathlib import Path
from typing import Any

import yaml

from meta_deployer.errors import DetectionError, SpecError
from meta_deployer.spec import MAX_YAML_DEPTH, _ConfigLoader, read_config_bytes

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "tests", "test", "build", "dist", "__pycache__", "site-packages"}
_MAX_DEPTH = 5

CodeSource = dict[str, str]


def detect_code_source(root: Path) -> CodeSource:
    """Return spec fields (``python_file``/``module_name``/``package_name`` and
    maybe ``working_directory``) found in the checkout at ``root``."""
    for finder in (_from_pyproject, _from_dagster_cloud, _from_workspace_yaml, _from_definitions_py):
        candidates = finder(root)
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            listed = "; ".join(_describe(c) for c in candidates)
            raise DetectionError(
                f"found more than one code source in the repository ({listed}); "
                "set python_file, module_name or package_name in config.yml (or PYTHON_FILE=...)"
            )
    raise DetectionError(
        "no code source found in the repository: looked for [tool.dagster] or [tool.dg.project] in "
        "pyproject.toml, dagster_cloud.yaml, workspace.yaml and a definitions.py; "
        "set python_file, module_name or package_name in config.yml (or PYTHON_FILE=...)"
    )


def _describe(candidate: CodeSource) -> str:
    return ", ".join(f"{k}={v}" for k, v in candidate.items())


def _clean(source: dict[str, Any]) -> CodeSource:
    result = {}
    for key in ("python_file", "module_name", "package_name", "working_directory"):
        value = source.get(key)
        if isinstance(value, str) and value:
            result[key] = posixpath.normpath(value)
    if result.get("working_directory") == ".":
        del result["working_directory"]
    return result


def _from_pyproject(root: Path) -> list[CodeSource]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DetectionError(f"pyproject.toml in the repository is not valid TOML: {exc}") from None
    tool = data.get("tool", {})
    dagster = tool.get("dagster") or {}
    if dagster.get("module_name") or dagster.get("python_file"):
        return [_clean(dagster)]
    project = (tool.get("dg") or {}).get("project") or {}
    root_module = project.get("root_module")
    if root_module:
        target = project.get("code_location_target_module") or f"{root_module}.definitions"
        source: dict[str, Any] = {"module_name": target}
        top = root_module.split(".")[0]
        if not (root / top).exists() and (root / "src" / top).exists():
            source["working_directory"] = "src"
        return [_clean(source)]
    return []


def _from_dagster_cloud(root: Path) -> list[CodeSource]:
    path = root / "dagster_cloud.yaml"
    if not path.is_file():
        return []
    data = _mapping(_yaml(path) or {}, path.name, "the file")
    candidates = []
    for location in _list(data.get("locations"), path.name, "locations"):
        location = _mapping(location, path.name, "each of locations")
        source = dict(_mapping(location.get("code_source") or {}, path.name, "code_source"))
        if location.get("working_directory"):
            source["working_directory"] = location["working_directory"]
        build_dir = _mapping(location.get("build") or {}, path.name, "build").get("directory")
        if isinstance(build_dir, str) and build_dir not in (".", "./"):
            wd = source.get("working_directory")
            source["working_directory"] = posixpath.join(build_dir, wd if isinstance(wd, str) else ".")
        cleaned = _clean(source)
        if set(cleaned) - {"working_directory"}:
            candidates.append(cleaned)
    return candidates


def _from_workspace_yaml(root: Path) -> list[CodeSource]:
    path = root / "workspace.yaml"
    if not path.is_file():
        return []
    data = _mapping(_yaml(path) or {}, path.name, "the file")
    candidates = []
    for entry in _list(data.get("load_from"), path.name, "load_from"):
        if not isinstance(entry, dict):
            continue
        if "python_file" in entry:
            body = entry["python_file"]
            body = _mapping({"relative_path": body} if isinstance(body, str) else body, path.name, "python_file")
            wd = body.get("working_directory")
            py = body.get("relative_path")
            if isinstance(wd, str) and isinstance(py, str) and wd and py and (
                posixpath.normpath(py).startswith(posixpath.normpath(wd) + "/")
            ):
                py = posixpath.relpath(py, wd)
            candidates.append(_clean({"python_file": py, "working_directory": wd}))
        elif "python_module" in entry:
            body = entry["python_module"]
            body = {"module_name": body} if isinstance(body, str) else body
            candidates.append(_clean(_mapping(body, path.name, "python_module")))
        elif "python_package" in entry:
            body = entry["python_package"]
            body = {"package_name": body} if isinstance(body, str) else body
            candidates.append(_clean(_mapping(body, path.name, "python_package")))
    return candidates


def _from_definitions_py(root: Path) -> list[CodeSource]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".") and len(rel.parts) < _MAX_DEPTH)
        if "definitions.py" in filenames:
            found.append(rel / "definitions.py")
    return [_source_for_file(root, f) for f in sorted(found)]


def _source_for_file(root: Path, rel_file: Path) -> CodeSource:
    """A module source when the file sits in a package (relative imports work), else a file."""
    parts = list(rel_file.parent.parts)
    package: list[str] = []
    while parts and (root.joinpath(*parts) / "__init__.py").is_file():
        package.insert(0, parts.pop())
    if package:
        source = {"module_name": ".".join([*package, "definitions"])}
        if parts:
            source["working_directory"] = "/".join(parts)
        return source
    return _clean({"python_file": rel_file.name, "working_directory": rel_file.parent.as_posix()})


def _mapping(value: Any, name: str, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise DetectionError(f"{name} in the repository: {what} must be a mapping, not {type(value).__name__}")
    return value


def _list(value: Any, name: str, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DetectionError(f"{name} in the repository: {what} must be a list, not {type(value).__name__}")
    return value


def _yaml(path: Path) -> Any:
    """The repository's YAML file at ``path``, through the bounded loader; DetectionError naming it."""
    name = path.name
    try:
        data = read_config_bytes(path)  # size checked before reading; not a regular file: refused
    except SpecError as exc:
        reasons = "; ".join(message for _, message in exc.problems).replace("a config.yml", name)
        raise DetectionError(f"{name} in the repository is refused: it {reasons}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DetectionError(f"{name} in the repository is not UTF-8 at byte {exc.start}") from None
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        # The loader's messages speak of config.yml, the file it was written for.
        reason = (
            str(exc).replace("config.yml", name).replace("<unicode string>", name)
            .replace("lists (environment, secrets, access.read) hold", "lists hold")
        )
        raise DetectionError(f"{name} in the repository is not valid YAML or breaks a limit: {reason}") from None
    except RecursionError:
        raise DetectionError(f"{name} in the repository is nested deeper than {MAX_YAML_DEPTH} levels") from None
