"""The runtime that ships into every location works on every supported Dagster release.

For each release of ``versions.tested_releases()`` (one per supported minor, 1.10 to 1.13 today) a
real virtualenv (tests/versionkit.py, built once and shared) runs, with only the runtime package
from this checkout importable:

- the validator (``meta_deployer_runtime.validate``): it serves the location entry point with
  ``dagster api grpc`` and lists its repositories over gRPC; a broken file is reported as a load
  error of the user's code, and the deployer's reading of that output names the stage;
- the loader, the prefix-enforcing IO manager and ``RepoComputeLogManager``
  (tests/versions_probe/run_location.py): assets materialize under ``repos/team-a/``, and the
  output of a run of location ``team-a`` is captured under ``repos/team-a/logs/``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from meta_deployer import versions
from meta_deployer.errors import UnsupportedDagsterVersion, ValidationFailed
from meta_deployer.platforms.location import VALIDATE_MODULE, validation_outcome
from meta_deployer_runtime.validate import parse_output
from versionkit import dagster_venv, runtime_env, validator_output

HERE = Path(__file__).resolve().parent
RELEASES = list(versions.tested_releases().values())
DEFINITIONS = (
    "import dagster as dg\n\n"
    "@dg.asset\ndef numbers() -> list:\n    return [1, 2, 3]\n\n"
    "@dg.asset\ndef total(numbers: list) -> int:\n    return sum(numbers)\n\n"
    "defs = dg.Definitions(assets=[numbers, total])\n"
)


def test_window_is_the_pinned_minor_and_the_three_before() -> None:
    major, minor = versions.current_minor()
    assert versions.supported_minors() == [f"{major}.{m}" for m in range(minor - 3, minor + 1)]
    assert list(versions.tested_releases()) == versions.supported_minors()
    assert versions.library_version("1.10.21") == "0.26.21"
    assert versions.library_version(versions.pin("dagster")) == versions.pin("dagster-aws")
    assert not versions.is_supported("1.5.13") and not versions.is_supported(f"{major}.{minor + 1}.0")


def test_unsupported_error_names_version_window_and_fix() -> None:
    with pytest.raises(UnsupportedDagsterVersion) as raised:
        versions.check_supported("team-old (its resolved requirements)", "1.5.13")
    message = str(raised.value)
    assert "team-old" in message and "1.5.13" in message and versions.window() in message
    assert f"dagster=={versions.pin('dagster')}" in message


def _validate(venv: Path, project: Path, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", VALIDATE_MODULE],
        cwd=project, capture_output=True, text=True, timeout=300,
        env=runtime_env(venv, META_DEPLOYER_CODE_SOURCE=f"python_file:{source}", META_DEPLOYER_REPO="team-a",
                        META_DEPLOYER_PREFIX="repos/team-a", META_DEPLOYER_STORAGE_DIR=str(project / "storage")),
    )


@pytest.mark.parametrize("release", RELEASES)
def test_validator_serves_the_entry_point(release: str, tmp_path: Path) -> None:
    venv = dagster_venv(release)
    (tmp_path / "definitions.py").write_text(DEFINITIONS)
    (tmp_path / "broken.py").write_text("import dagster as dg\nimport no_such_module_xyz\n")

    good = _validate(venv, tmp_path, "definitions.py")
    version, result = parse_output(good.stdout)
    assert good.returncode == 0, good.stdout + good.stderr
    assert version == release and result is not None and result["repositories"] == ["__repository__"]
    assert validation_outcome("team-a", "its virtualenv", good.stdout, good.returncode) == release

    bad = _validate(venv, tmp_path, "broken.py")
    version, result = parse_output(bad.stdout)
    assert bad.returncode != 0 and version == release
    assert result is not None and result["stage"] == "load" and "no_such_module_xyz" in result["error"]
    with pytest.raises(ValidationFailed, match=r"definitions of team-a failed to load .*dagster " + release):
        validation_outcome("team-a", "its virtualenv", bad.stdout, bad.returncode)


@pytest.mark.parametrize("release", RELEASES)
def test_io_manager_and_compute_logs(release: str, tmp_path: Path) -> None:
    venv = dagster_venv(release)
    (tmp_path / "definitions.py").write_text(DEFINITIONS)
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(HERE / "versions_probe" / "run_location.py"), str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=runtime_env(venv),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT="))[7:])
    assert result["materialized"] and result["ran"]
    assert result["manager"] == "LocalRepoComputeLogManager"  # RepoComputeLogManager with local storage
    files = result["files"]
    assert "repos/team-a/assets/numbers" in files and "repos/team-a/assets/total" in files, files
    assert all(f.startswith(("repos/team-a/", "system/logs/")) for f in files), files
    run_logs = [f for f in files if result["run_id"] in f]
    assert run_logs and all(f.startswith(f"repos/team-a/logs/{result['run_id']}/") for f in run_logs), run_logs
    assert result["captured"] >= 1 and "shouted-to-stdout" in result["stdout_text"]


def test_the_validator_refuses_a_release_outside_the_window_it_is_given(tmp_path: Path) -> None:
    """The builders pass the window (``META_DEPLOYER_DAGSTER_WINDOW``): an image holding another release fails
    validation, so it is never tagged or pushed, and the deployer reads the version error from its report."""
    from meta_deployer_runtime import validate

    assert validate.WINDOW_ENV == versions.WINDOW_ENV  # the runtime cannot import the deployer: one spelling, checked
    release = RELEASES[0]
    (tmp_path / "definitions.py").write_text(DEFINITIONS)
    others = ",".join(m for m in versions.supported_minors() if not release.startswith(m + "."))
    lines, code = validator_output(dagster_venv(release) / "bin" / "python", tmp_path, **{versions.WINDOW_ENV: others})
    version, result = parse_output("\n".join(lines))
    assert code == validate.EXIT_CODES["version"] and version == release
    assert result is not None and result["stage"] == "version" and others.replace(",", ", ") in result["error"]
    with pytest.raises(UnsupportedDagsterVersion, match=f"dagster {release}"):
        validation_outcome("team-a", "the new image", "\n".join(lines), code)

    # With the deployer's own window, the same release loads.
    lines, code = validator_output(dagster_venv(release) / "bin" / "python", tmp_path, **versions.window_env())
    assert code == 0 and validation_outcome("team-a", "the new image", "\n".join(lines), code) == release
