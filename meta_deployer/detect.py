"""Find a repository's code source when its config.yml names none.

Looked for in this order, in the repository root; the first place that names
a code source wins:

1. ``pyproject.toml``: ``[tool.dagster]`` (``module_name``/``python_file``) or
   ``[tool.dg.project]`` (``root_module``, ``code_location_target_module``);
2. ``dagster_cloud.yaml``: its single location's ``code_source``;
3. ``workspace.yaml``: its single ``load_from`` entry;
4. a single ``definitions.py`` anywhere outside tests and virtualenvs; else project folders below
   the root with their own Dagster project config (one is the code source, several are candidates).

A repository that *declares* several locations (a ``dagster_cloud.yaml`` with
several ``locations``, a dg workspace, ``[tool.dg] directory_type = "workspace"``
in ``pyproject.toml`` or ``directory_type = "workspace"`` in ``dg.toml``, with its
projects) gets ``{"locations": [...]}``: one entry per location, each with its
``name`` (a DNS label made from the declared name), its code source and its
``working_directory`` (the project's folder, where its own dependencies live).
Several *undeclared* candidates (project folders with their own
``pyproject.toml``, or several ``definitions.py``) are an error that lists them
and says how to choose one: ``WORKING_DIRECTORY=<folder>``. Nothing found is an
error too. This module reads files only; it runs nothing, and every path it
returns stays inside the repository (a symbolic link that leaves it is refused).

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

from meta_deployer import naming
from meta_deployer.errors import DetectionError, SpecError
from meta_deployer.spec import MAX_YAML_DEPTH, _ConfigLoader, read_config_bytes, relative_path_problem

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "tests", "test", "build", "dist", "__pycache__", "site-packages"}
_MAX_DEPTH = 5

CodeSource = dict[str, str]


#: How to choose one of several undeclared candidates.
CHOOSE_HINT = (
    "choose one with make add-repo REPO_URL=... REPO_NAME=... WORKING_DIRECTORY=<folder> (and PYTHON_FILE= or "
    "MODULE_NAME= relative to it when the folder holds more than one), set python_file, module_name or "
    "package_name (and working_directory) in config.yml, or declare every location in a dagster_cloud.yaml "
    "(locations:) or a dg workspace to deploy them all"
)
#: The most project folders a dg workspace may list (as config.yml's locations).
MAX_PROJECTS = 20
_MAX_TOML_BYTES = 256 * 1024


def detect(root: Path) -> dict[str, Any]:
    """The code source found in the checkout at ``root``: spec fields (``python_file``/``module_name``/
    ``package_name`` and maybe ``working_directory``), or ``{"locations": [...]}`` when the repository
    declares several locations. DetectionError when there is none, or several undeclared ones."""
    # What the repository declares for deployment comes first: dagster_cloud.yaml's locations (what
    # Dagster+ deploys), else a dg workspace's projects.
    cloud = _from_dagster_cloud(root)
    if len(cloud) > 1:
        return {"locations": _named(cloud, "dagster_cloud.yaml")}
    workspace = _from_dg_workspace(root)
    if workspace:
        return {"locations": workspace}
    for finder in (_from_pyproject, _from_dagster_cloud, _from_workspace_yaml, _from_definitions_or_projects):
        candidates = finder(root)
        if len(candidates) == 1:
            found = dict(candidates[0])
            found.pop("name", None)
            return found
        if len(candidates) > 1:
            listed = "; ".join(_describe(c) for c in candidates)
            raise DetectionError(f"found more than one code source in the repository, none declared as a location ({listed}); " + CHOOSE_HINT)
    raise DetectionError(
        "no code source found in the repository: looked for [tool.dagster] or [tool.dg.project] in "
        "pyproject.toml, dagster_cloud.yaml, workspace.yaml and a definitions.py; "
        "set python_file, module_name or package_name in config.yml (or PYTHON_FILE=...)"
    )


def detect_code_source(root: Path) -> CodeSource:
    """A single code source (``detect``), or DetectionError when the repository declares several locations."""
    found = detect(root)
    if "locations" in found:
        names = ", ".join(loc["name"] for loc in found["locations"])
        raise DetectionError(f"the repository declares several locations ({names}); " + CHOOSE_HINT)
    return found


def _named(candidates: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Candidates as config.yml locations: each with a unique label made from its declared name."""
    if len(candidates) > MAX_PROJECTS:
        raise DetectionError(f"{where} in the repository declares {len(candidates)} locations; at most {MAX_PROJECTS} are deployed from one repository")
    result, seen = [], set()
    for candidate in candidates:
        declared = str(candidate.get("name") or candidate.get("working_directory") or "")
        label = naming.label_from(posixpath.basename(declared.rstrip("/")) if "/" in declared else declared)
        if not label:
            raise DetectionError(f"{where} in the repository: location {declared[:80]!r} has no name usable as a location name (letters, digits, '-')")
        if label in seen:
            raise DetectionError(f"{where} in the repository: two locations are both named {label!r} once made DNS labels; rename one")
        seen.add(label)
        result.append({"name": label, **{k: v for k, v in candidate.items() if k != "name"}})
    return result


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
            _check_inside(root, cleaned.get("working_directory"), path.name)
            name = location.get("location_name")
            candidates.append({**cleaned, "name": name if isinstance(name, str) else ""})
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


def _toml(path: Path) -> dict[str, Any]:
    """A TOML file of the repository (bounded, a regular file inside it); DetectionError naming it."""
    if path.is_symlink():
        raise DetectionError(f"{path.name} in the repository is a symbolic link; commit the file itself")
    try:
        if path.stat().st_size > _MAX_TOML_BYTES:
            raise DetectionError(f"{path.name} in the repository is larger than {_MAX_TOML_BYTES} bytes")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DetectionError(f"{path.name} in the repository is not valid TOML: {exc}") from None
    except OSError as exc:
        raise DetectionError(f"{path.name} in the repository cannot be read: {exc.strerror}") from None


def _check_inside(root: Path, rel: Any, where: str) -> None:
    """A declared folder must be a relative path that stays inside the repository, links resolved."""
    if rel is None:
        return
    problem = relative_path_problem(rel) if isinstance(rel, str) else "must be a path"
    if problem is None:
        real, top = os.path.realpath(root / rel), os.path.realpath(root)
        if not Path(real).is_relative_to(top):
            problem = "leaves the repository (through a symbolic link)"
    if problem:
        raise DetectionError(f"{where} in the repository: folder {str(rel)[:120]!r} {problem}")


def _workspace_projects(root: Path) -> list[str] | None:
    """The project folders of a dg workspace at ``root`` (None when it is not one)."""
    for name, keys in (("dg.toml", ()), ("pyproject.toml", ("tool", "dg"))):
        path = root / name
        if not path.is_file():
            continue
        data: Any = _toml(path)
        for key in keys:
            data = data.get(key) if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("directory_type") != "workspace":
            continue
        listed = (data.get("workspace") or {}).get("projects") if isinstance(data.get("workspace"), dict) else None
        if isinstance(listed, list) and listed:
            paths = [p.get("path") for p in listed if isinstance(p, dict)]
            if len(paths) > MAX_PROJECTS:
                raise DetectionError(f"{name} in the repository lists {len(paths)} projects; at most {MAX_PROJECTS} are deployed from one repository")
            for rel in paths:
                _check_inside(root, rel, name)
            return [posixpath.normpath(p) for p in paths if isinstance(p, str)]
        projects = root / "projects"
        if projects.is_dir() and not projects.is_symlink():
            return sorted(f"projects/{d.name}" for d in projects.iterdir() if d.is_dir() and not d.name.startswith("."))[: MAX_PROJECTS + 1]
        return []
    return None


def _project_source(root: Path, rel: str) -> dict[str, Any] | None:
    """The code source of the project folder ``rel`` (its pyproject.toml or dg.toml), relative to it."""
    folder = root / rel
    if os.path.islink(folder) or not Path(os.path.realpath(folder)).is_relative_to(os.path.realpath(root)):
        raise DetectionError(f"project folder {rel!r} in the repository is a symbolic link; commit the folder itself")
    project: Any = None
    if (folder / "dg.toml").is_file():
        project = _toml(folder / "dg.toml").get("project")
    if not isinstance(project, dict) and (folder / "pyproject.toml").is_file():
        tool = _toml(folder / "pyproject.toml").get("tool") or {}
        dagster = tool.get("dagster") if isinstance(tool, dict) else None
        if isinstance(dagster, dict) and (dagster.get("module_name") or dagster.get("python_file")):
            found = _clean(dagster)
            _check_inside(root, posixpath.join(rel, found.get("working_directory", ".")), "pyproject.toml")
            return {**found, "working_directory": posixpath.normpath(posixpath.join(rel, found.get("working_directory", ".")))}
        project = (tool.get("dg") or {}).get("project") if isinstance(tool, dict) and isinstance(tool.get("dg"), dict) else None
    if not isinstance(project, dict):
        return None
    root_module = project.get("root_module")
    target = project.get("code_location_target_module") or (f"{root_module}.definitions" if isinstance(root_module, str) else None)
    if not isinstance(target, str):
        return None
    name = project.get("code_location_name")
    return {"name": name if isinstance(name, str) else posixpath.basename(rel), "module_name": target, "working_directory": rel}


def _from_dg_workspace(root: Path) -> list[dict[str, Any]]:
    """The projects of a dg workspace as locations ([] when the repository is not one)."""
    paths = _workspace_projects(root)
    if paths is None:
        return []
    sources = []
    for rel in paths:
        source = _project_source(root, rel)
        if source is None:
            raise DetectionError(
                f"dg workspace project {rel!r} in the repository has no [tool.dg.project] root_module (pyproject.toml) "
                "or [project] root_module (dg.toml); add one, or list only Dagster projects"
            )
        sources.append(source)
    if not sources:
        raise DetectionError("the repository is a dg workspace without projects (none listed, none under projects/)")
    return _named(sources, "the dg workspace")


def _from_definitions_or_projects(root: Path) -> list[CodeSource]:
    """A single ``definitions.py``; else the project folders (one is the code source, several are the
    candidates to choose from); else the several ``definitions.py`` as candidates."""
    files = _from_definitions_py(root)
    if len(files) == 1:
        return files
    return _from_project_folders(root) or files


def _from_project_folders(root: Path) -> list[CodeSource]:
    """Project folders below the root with their own Dagster project config (undeclared candidates)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".") and len(rel.parts) < 3)
        if rel.parts and ("pyproject.toml" in filenames or "dg.toml" in filenames):
            try:
                source = _project_source(root, rel.as_posix())
            except DetectionError:  # not a project we could use (unreadable, a link): not a candidate
                continue
            if source is not None:
                found.append(source)
    return found


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
