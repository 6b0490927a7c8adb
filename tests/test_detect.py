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
