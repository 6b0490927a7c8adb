"""Repositories with several code locations: detection, naming and config.yml ``locations:`` (pure, on
real files), including hostile repositories."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from meta_deployer import naming
from meta_deployer.detect import detect
from meta_deployer.errors import DetectionError, SpecError
from meta_deployer.spec import parse_spec, spec_from_bytes


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


CLOUD_YAML = """\
locations:
  - location_name: Data_Ingest
    code_source: {module_name: ingest.definitions}
    working_directory: ingest
  - location_name: reports
    code_source: {package_name: reports}
    build: {directory: teams}
    working_directory: reports
"""


def test_dagster_cloud_yaml_with_several_locations(tmp_path):
    write(tmp_path, {"dagster_cloud.yaml": CLOUD_YAML})
    assert detect(tmp_path) == {"locations": [
        {"name": "data-ingest", "module_name": "ingest.definitions", "working_directory": "ingest"},
        {"name": "reports", "package_name": "reports", "working_directory": "teams/reports"},
    ]}


def test_dg_workspace_listed_and_default_projects(tmp_path):
    listed = write(tmp_path / "listed", {
        "pyproject.toml": '[tool.dg]\ndirectory_type = "workspace"\n[[tool.dg.workspace.projects]]\npath = "p/one"\n',
        "p/one/pyproject.toml": '[tool.dg.project]\nroot_module = "one"\ncode_location_target_module = "one.defs"\n',
    })
    assert detect(listed) == {"locations": [{"name": "one", "module_name": "one.defs", "working_directory": "p/one"}]}
    default = write(tmp_path / "default", {
        "dg.toml": 'directory_type = "workspace"\n[workspace]\n',
        "projects/project_1/pyproject.toml": '[tool.dg.project]\nroot_module = "project_1"\n',
        "projects/project-2/dg.toml": 'directory_type = "project"\n[project]\nroot_module = "project_2"\ncode_location_name = "second"\n',
    })
    assert detect(default) == {"locations": [
        {"name": "second", "module_name": "project_2.definitions", "working_directory": "projects/project-2"},
        {"name": "project-1", "module_name": "project_1.definitions", "working_directory": "projects/project_1"},
    ]}


def test_undeclared_projects_are_listed_with_how_to_choose(tmp_path):
    write(tmp_path, {
        "a/pyproject.toml": '[tool.dagster]\nmodule_name = "a.definitions"\n',
        "b/pyproject.toml": '[tool.dg.project]\nroot_module = "b"\n',
    })
    with pytest.raises(DetectionError) as info:
        detect(tmp_path)
    message = str(info.value)
    assert "working_directory=a" in message and "working_directory=b" in message
    assert "WORKING_DIRECTORY=<folder>" in message and "PYTHON_FILE=" in message
    # inside one of them, the choice is unambiguous
    assert detect(tmp_path / "b") == {"module_name": "b.definitions"}


def test_location_names_and_their_limits():
    assert naming.location_name("sales", "ingest") == "sales-ingest"
    long = naming.location_name("a" * 30, "b" * 30)
    assert len(long) <= naming.MAX_NAME_LENGTH and long.startswith("a" * 30) and naming.name_problem(long) is None
    assert long != naming.location_name("a" * 30, "b" * 29 + "c")  # a hash keeps them apart
    with pytest.raises(ValueError, match="reserved"):
        naming.location_name("meta", "deployer")  # meta-deployer is the platform's own
    assert naming.label_from("Ingest_Team v2") == "ingest-team-v2"
    assert naming.label_from("../../etc") == "etc"
    assert naming.label_from("\u0441ales") == "ales"  # a Cyrillic lookalike letter is dropped, not kept
    assert naming.label_from("___") == ""


def test_config_yml_locations_are_validated_like_the_rest():
    spec = parse_spec({"name": "team", "git_url": "https://h/r.git", "locations": [
        {"name": "ingest", "module_name": "ingest.definitions", "working_directory": "ingest"},
        {"name": "ml", "python_file": "defs.py", "working_directory": "ml"},
    ]}, "t")
    parts = spec.location_specs()
    assert [(p.name, p.working_directory, p.prefix) for p in parts] == [
        ("team-ingest", "ingest", "repos/team-ingest"), ("team-ml", "ml", "repos/team-ml")]
    for bad, field in (
        ({"name": "x", "working_directory": "../other"}, "locations.0.working_directory"),
        ({"name": "x", "working_directory": "/etc"}, "locations.0.working_directory"),
        ({"name": "X_bad"}, "locations.0.name"),
        ({"name": "x", "workdir": "a"}, "locations.0.workdir"),
        ({"name": "x", "module_name": "os; rm -rf /"}, "locations.0.module_name"),
    ):
        with pytest.raises(SpecError) as info:
            parse_spec({"name": "team", "git_url": "https://h/r.git", "locations": [bad]}, "repos/team/config.yml")
        assert info.value.problems[0][0] == field, info.value
    with pytest.raises(SpecError, match="more than once"):
        parse_spec({"name": "team", "git_url": "https://h/r.git", "locations": [{"name": "a"}, {"name": "a"}]}, "t")
    with pytest.raises(SpecError, match="set together"):
        parse_spec({"name": "team", "git_url": "https://h/r.git", "python_file": "d.py", "locations": [{"name": "a"}]}, "t")
    many = "name: team\ngit_url: https://h/r.git\nlocations:\n" + "".join(f"  - name: l{i}\n" for i in range(30))
    with pytest.raises(SpecError, match="at most 20"):
        spec_from_bytes(many.encode(), "t")


def test_hostile_repositories(tmp_path):
    # path traversal in a declared working directory
    write(tmp_path / "trav", {"dagster_cloud.yaml": CLOUD_YAML.replace("working_directory: ingest", "working_directory: ../../etc")})
    with pytest.raises(DetectionError, match="stay inside the repository"):
        detect(tmp_path / "trav")
    # a project folder that is a symbolic link leaving the repository
    outside = write(tmp_path / "outside", {"pyproject.toml": '[tool.dg.project]\nroot_module = "evil"\n'})
    ws = write(tmp_path / "ws", {"pyproject.toml": '[tool.dg]\ndirectory_type = "workspace"\n'})
    (ws / "projects").mkdir()
    os.symlink(outside, ws / "projects" / "evil")
    with pytest.raises(DetectionError, match="symbolic link"):
        detect(ws)
    listed = write(tmp_path / "listed", {
        "pyproject.toml": '[tool.dg]\ndirectory_type = "workspace"\n[[tool.dg.workspace.projects]]\npath = "link"\n'})
    os.symlink(outside, listed / "link")
    with pytest.raises(DetectionError, match="leaves the repository"):
        detect(listed)
    # a huge dagster_cloud.yaml is refused before it is read, fast
    huge = tmp_path / "huge"
    huge.mkdir()
    (huge / "dagster_cloud.yaml").write_text("locations:\n" + "  - location_name: x\n    code_source: {package_name: p}\n" * 200_000)
    started = time.monotonic()
    with pytest.raises(DetectionError, match="refused"):
        detect(huge)
    assert time.monotonic() - started < 5
    # lookalike names that collide once made labels
    write(tmp_path / "twins", {"dagster_cloud.yaml": (
        "locations:\n  - location_name: Sales_EU\n    code_source: {package_name: a}\n"
        "  - location_name: sales-eu\n    code_source: {package_name: b}\n")})
    with pytest.raises(DetectionError, match="both named 'sales-eu'"):
        detect(tmp_path / "twins")
    # a name with nothing usable in it
    write(tmp_path / "empty", {"dagster_cloud.yaml": (
        "locations:\n  - location_name: '***'\n    code_source: {package_name: a}\n"
        "  - location_name: ok\n    code_source: {package_name: b}\n")})
    with pytest.raises(DetectionError, match="no name usable"):
        detect(tmp_path / "empty")


def test_a_location_may_not_take_another_repos_name(tmp_path):
    from meta_deployer.scan import scan_repo_configs

    for name, body in (
        ("sales", "locations:\n  - name: eu\n    package_name: eu\n  - name: us\n    package_name: us\n"),
        ("sales-eu", "python_file: defs.py\n"),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yml").write_text(f"name: {name}\ngit_url: https://h/{name}.git\n{body}")
    scanned = scan_repo_configs(tmp_path)
    assert scanned["sales-eu"].spec is not None
    assert scanned["sales"].spec is None and "sales-eu" in scanned["sales"].error


def test_src_layouts_at_any_depth_and_the_location_name_warning(tmp_path, monkeypatch, caplog):
    """The runtime puts <working_directory>/src on sys.path even when the working directory is already
    there (Dagster puts it first), and drops Dagster's folder-name mismatch warning."""
    import logging
    import sys

    from meta_deployer_runtime import location

    wd = write(tmp_path / "projects" / "alpha", {"src/alpha_pkg_md13/__init__.py": "", "src/alpha_pkg_md13/definitions.py": (
        "import dagster as dg\n\n@dg.asset\ndef a() -> int:\n    return 1\n\ndefs = dg.Definitions(assets=[a])\n")})
    monkeypatch.setattr(sys, "path", [str(wd), *sys.path])  # as Dagster's code server leaves it
    targets = location._load_targets("module_name", "alpha_pkg_md13.definitions", str(wd))
    assert "defs" in targets and sys.path.index(str(wd / "src")) == sys.path.index(str(wd)) + 1

    location._quiet_location_name_warning()
    logger = logging.getLogger("dagster.components.core.component_tree")
    with caplog.at_level(logging.WARNING):
        logger.warning("The code location name 'src' configured on this project does not match the name "
                       "'team-a' this code location is registered under. App-managed components ...")
        logger.warning("another warning")
    assert [r.getMessage() for r in caplog.records if r.name == logger.name] == ["another warning"]
