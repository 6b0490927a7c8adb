"""Per-repo compute logs: runs of a repo's location go under repos/<name>/logs/, others under system/logs/.

Runs are real runs in a real instance (sqlite in a temp DAGSTER_HOME) whose
``dagster.yaml`` configures ``RepoComputeLogManager``; each is created with
the remote origin of a code location, as the webserver or daemon creates them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from dagster import DagsterInstance, job, op, reconstructable
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.compute_log_manager import ComputeIOType

from meta_deployer_runtime.compute_logs import LocalRepoComputeLogManager, logs_prefix_for_location
from meta_deployer_runtime.errors import StorageIsolationError

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
BUCKET = "dagster-storage"
DAGSTER_YAML = "compute_logs:\n  module: meta_deployer_runtime.compute_logs\n  class: RepoComputeLogManager\n  config: {config}\n"


@op
def shout() -> None:
    print("to-stdout")
    sys.stderr.write("to-stderr\n")


@job
def noisy() -> None:
    shout()


def run_as_location(instance: DagsterInstance, location: str | None) -> str:
    """Execute ``noisy`` as a run of ``location`` (None: a run without a remote origin)."""
    recon = reconstructable(noisy)
    origin = (
        RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin(location), "__repository__"), "noisy")
        if location
        else None
    )
    run = instance.create_run_for_job(
        noisy, run_config=IN_PROCESS, remote_job_origin=origin, job_code_origin=recon.get_python_origin()
    )
    assert execute_run(recon, run, instance).success
    return run.run_id


def captured_log_key(instance: DagsterInstance, run_id: str) -> list[str]:
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event and event.event_type_value == "LOGS_CAPTURED":
            return list(instance.compute_log_manager.build_log_key_for_run(run_id, event.event_specific_data.file_key))
    raise AssertionError(f"run {run_id} captured no logs")


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "dagster_home"
    path.mkdir()
    return path


@pytest.fixture
def local_instance(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """Local storage chosen from the environment only: config is empty, as in the shipped dagster.yaml."""
    monkeypatch.delenv("META_DEPLOYER_BUCKET", raising=False)
    monkeypatch.setenv("META_DEPLOYER_STORAGE_DIR", str(tmp_path / "storage"))
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(config="{}"))
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.mark.parametrize(
    "location, prefix",
    [
        ("alpha", ("repos", "alpha", "logs")),
        ("team-sales-2", ("repos", "team-sales-2", "logs")),
        ("meta_deployer", ("system", "logs")),
        (None, ("system", "logs")),
        ("", ("system", "logs")),
        ("shared", ("system", "logs")),
        ("Not A Repo", ("system", "logs")),
        ("../alpha", ("system", "logs")),
    ],
)
def test_prefix_for_location(location: str | None, prefix: tuple[str, ...]) -> None:
    assert logs_prefix_for_location(location) == prefix


def test_local_logs_are_routed_by_code_location(local_instance: DagsterInstance, tmp_path: Path, home: Path) -> None:
    storage = tmp_path / "storage"
    manager = local_instance.compute_log_manager
    assert isinstance(manager, LocalRepoComputeLogManager)
    runs = {loc: run_as_location(local_instance, loc) for loc in ("alpha", "beta", "meta_deployer", None)}

    expected_dirs = {
        "alpha": f"repos/alpha/logs/{runs['alpha']}/compute_logs/",
        "beta": f"repos/beta/logs/{runs['beta']}/compute_logs/",
        "meta_deployer": f"system/logs/{runs['meta_deployer']}/compute_logs/",
        None: f"system/logs/{runs[None]}/compute_logs/",
    }
    files = files_under(storage)
    for loc, run_id in runs.items():
        mine = [f for f in files if run_id in f]
        assert mine and all(f.startswith(expected_dirs[loc]) for f in mine), (loc, mine)
    assert all(f.startswith(("repos/alpha/logs/", "repos/beta/logs/", "system/logs/")) for f in files)

    # A fresh instance (the webserver's view) reads the logs back from the same place.
    with DagsterInstance.from_config(str(home)) as reader:
        log_key = captured_log_key(reader, runs["alpha"])
        data = reader.compute_log_manager.get_log_data(log_key)
        assert b"to-stdout" in data.stdout and b"to-stderr" in data.stderr
        assert reader.compute_log_manager.is_capture_complete(log_key)
        metadata = reader.compute_log_manager.get_log_metadata(log_key)
        assert metadata.stdout_location.startswith(str(storage / "repos" / "alpha" / "logs"))
        found = reader.compute_log_manager.get_log_keys_for_log_key_prefix(log_key[:-1], ComputeIOType.STDOUT)
        assert found == [log_key]
        reader.compute_log_manager.delete_logs(prefix=[runs["alpha"]])
    assert not (storage / "repos" / "alpha" / "logs" / runs["alpha"]).exists()
    assert (storage / "repos" / "beta" / "logs" / runs["beta"]).exists()


@pytest.mark.parametrize("log_key", [["..", "x", "y"], ["run", "", "y"], ["run", "a/b", "y"], ["/", "x"]], ids=repr)
def test_hostile_log_keys_are_refused(local_instance: DagsterInstance, log_key: list[str]) -> None:
    with pytest.raises(StorageIsolationError):
        local_instance.compute_log_manager.get_captured_local_path(log_key, "out")


def test_s3_logs_are_routed_by_code_location(moto, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting META_DEPLOYER_BUCKET alone switches the same dagster.yaml to S3."""
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("META_DEPLOYER_BUCKET", BUCKET)
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(config=f"{{local_dir: {tmp_path / 'staging'}}}"))
    with DagsterInstance.from_config(str(home)) as instance:
        runs = {loc: run_as_location(instance, loc) for loc in ("alpha", "beta", "meta_deployer")}
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys
    for loc, prefix in (("alpha", "repos/alpha/logs"), ("beta", "repos/beta/logs"), ("meta_deployer", "system/logs")):
        mine = [k for k in keys if runs[loc] in k]
        assert mine and all(k.startswith(f"{prefix}/{runs[loc]}/compute_logs/") for k in mine), (loc, mine)
        assert any(k.endswith(".out") for k in mine) and any(k.endswith(".err") for k in mine)
    assert len(keys) == sum(1 for k in keys for r in runs.values() if r in k)

    with DagsterInstance.from_config(str(home)) as reader:  # reads back from S3 (staging was cleared)
        log_key = captured_log_key(reader, runs["beta"])
        assert b"to-stdout" in reader.compute_log_manager.get_log_data(log_key).stdout
        reader.compute_log_manager.delete_logs(prefix=[runs["beta"]])
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert not [k for k in keys if runs["beta"] in k] and [k for k in keys if runs["alpha"] in k]


def test_a_log_file_linked_to_another_repo_is_never_read(local_instance: DagsterInstance, tmp_path: Path, home: Path) -> None:
    """beta's code owns its log folder (its container mounts it) and plants a link to alpha's asset
    where its step's log will be read: the webserver must not show alpha's file as beta's logs."""
    storage = tmp_path / "storage"
    secret = storage / "repos" / "alpha" / "assets" / "secret"
    secret.parent.mkdir(parents=True)
    secret.write_text("alpha's secret")
    run_id = run_as_location(local_instance, "beta")
    with DagsterInstance.from_config(str(home)) as reader:
        log_key = captured_log_key(reader, run_id)
        out = Path(reader.compute_log_manager.get_captured_local_path(log_key, "out"))
        out.unlink()
        out.symlink_to(secret)
        with pytest.raises(StorageIsolationError, match="symbolic link"):
            reader.compute_log_manager.get_log_data(log_key)
        with pytest.raises(StorageIsolationError):
            reader.compute_log_manager.get_log_metadata(log_key)  # the download URL's path too
    assert secret.read_text() == "alpha's secret"
