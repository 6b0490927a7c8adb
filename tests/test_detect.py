"""Code source detection, on real files in a folder."""

from pathlib import Path

import pytest

from meta_deployer.detect import detect_code_source
from meta_deployer.errors import DetectionError


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_tool_dagster_in_pyproject(tmp_path):
    write(tmp_path, {"pyproject.toml": '[tool.dagster]\nmodule_name = "proj.definitions"\n'})
    assert detect_code_source(tmp_path) == {"module_name": "proj.definitions"}


def test_dg_project_with_src_layout(tmp_path):
    write(tmp_path, {"pyproject.toml": '[tool.dg.project]\nroot_module = "proj"\n', "src/proj/__init__.py": ""})
    assert detect_code_source(tmp_path) == {"module_name": "proj.definitions", "working_directory": "src"}


def test_dagster_cloud_yaml(tmp_path):
    write(tmp_path, {"dagster_cloud.yaml": "locations:\n  - location_name: x\n    code_source:\n      package_name: proj\n"})
    assert detect_code_source(tmp_path) == {"package_name": "proj"}


def test_workspace_yaml(tmp_path):
    write(tmp_path, {"workspace.yaml": "load_from:\n  - python_file:\n      relative_path: app/defs.py\n      working_directory: app\n"})
    assert detect_code_source(tmp_path) == {"python_file": "defs.py", "working_directory": "app"}


def test_single_definitions_py_as_file_or_module(tmp_path):
    write(tmp_path, {"definitions.py": "", "tests/definitions.py": ""})
    assert detect_code_source(tmp_path) == {"python_file": "definitions.py"}
    pkg = write(tmp_path / "pkg", {"src/proj/__init__.py": "", "src/proj/definitions.py": ""})
    assert detect_code_source(pkg) == {"module_name": "proj.definitions", "working_directory": "src"}


def test_ambiguous_and_missing_name_the_candidates(tmp_path):
    write(tmp_path, {"a/definitions.py": "", "b/definitions.py": ""})
    with pytest.raises(DetectionError) as info:
        detect_code_source(tmp_path)
    assert "python_file=definitions.py, working_directory=a" in str(info.value)
    assert "working_directory=b" in str(info.value)
    with pytest.raises(DetectionError, match="no code source found"):
        detect_code_source(tmp_path / "a" / "nothing")


def test_pyproject_wins_over_definitions_py(tmp_path):
    write(tmp_path, {"pyproject.toml": '[tool.dagster]\nmodule_name = "m"\n', "definitions.py": ""})
    assert detect_code_source(tmp_path) == {"module_name": "m"}


# -- hostile YAML in the repository itself, through a real git checkout ------------------------

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
) + "locations: *i\n"
CLOUD_OK = "locations:\n  - location_name: x\n    code_source:\n      package_name: proj\n"


@pytest.mark.parametrize(
    "files, fragment",
    [
        ({"dagster_cloud.yaml": LAUGHS}, "aliases"),  # billion laughs: 9**9 values if expanded
        ({"workspace.yaml": "load_from:\n" + "  - python_file: defs.py  # padding padding padding\n" * 2000}, "bytes"),
        ({"dagster_cloud.yaml": "locations: [" * 1000 + "]" * 1000}, "nested deeper"),
        ({"workspace.yaml": "load_from:\n" + "".join(f"  - python_module: m{i}\n" for i in range(150))}, "more than"),
        ({"dagster_cloud.yaml": CLOUD_OK + "locations: []\n"}, "duplicate key 'locations'"),
        ({"dagster_cloud.yaml": "locations:\n  - location_name: \xff\n"}, "not UTF-8"),
        ({"workspace.yaml": "- just\n- a list\n"}, "must be a mapping"),
        ({"dagster_cloud.yaml": "locations: {a: 1}\n"}, "must be a list"),
    ],
    ids=["billion-laughs", "too-big", "too-deep", "too-many", "duplicate-key", "not-utf8", "not-a-mapping", "not-a-list"],
)
def test_hostile_yaml_in_the_repository_fails_fast_naming_the_file(project, git_remote, files, fragment):
    """A repo's own dagster_cloud.yaml / workspace.yaml is hostile input: the bounded loader of config.yml."""
    import time

    from meta_deployer.pipeline import Deployer
    from meta_deployer.spec import parse_spec

    remote = git_remote(files={"definitions.py": "", **{k: v for k, v in files.items() if "\xff" not in v}})
    for rel, text in files.items():
        if "\xff" in text:  # bytes that are not UTF-8
            (remote.path / rel).write_bytes(text.encode("latin-1"))
            remote.commit({}, "not utf-8")
    name = next(iter(files))
    workspace_before = project.workspace_bytes()
    started = time.monotonic()
    with pytest.raises(DetectionError) as info:
        Deployer().checkout(parse_spec({"name": "hostile", "git_url": remote.url}, "test"))
    assert time.monotonic() - started < 1.0 + 0.5  # the clone itself takes a moment; no expansion
    message = str(info.value)
    assert message.startswith("hostile: ") and name in message and fragment in message
    assert "config.yml" not in message  # the file is named as what it is
    assert len(message) < 2000
    assert project.workspace_bytes() == workspace_before
    assert not (project.repos / "hostile").exists()


def test_a_valid_dagster_cloud_yaml_still_detects_through_a_checkout(project, git_remote):
    from meta_deployer.pipeline import Deployer
    from meta_deployer.spec import parse_spec

    remote = git_remote(files={"dagster_cloud.yaml": CLOUD_OK, "proj/__init__.py": ""})
    deployer = Deployer()
    state = deployer.checkout(parse_spec({"name": "fine", "git_url": remote.url}, "test"))
    deployer.leases.release("fine")
    assert state.spec.package_name == "proj"
