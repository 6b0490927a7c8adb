"""Two repos against a real moto S3 server, each executed in-process with its injected settings.

Every S3 call the code makes is recorded through a botocore event hook
(``before-parameter-build.s3``, registered on every botocore session created during the
test); nothing is patched or mocked on the path under test.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.handlers
import pytest
from dagster import (
    AssetIn,
    AssetKey,
    DagsterInstance,
    Definitions,
    StaticPartitionsDefinition,
    asset,
    job,
    materialize,
    op,
    reconstructable,
)
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

from meta_deployer_runtime.errors import StorageIsolationError
from meta_deployer_runtime.io import inject_io_manager, repo_asset

BUCKET = "dagster-storage"
DAYS = StaticPartitionsDefinition(["2024-01-01", "2024-01-02"])
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


# -- the two repos' code (knows nothing about meta_deployer but repo_asset) ---
@asset
def orders() -> list[int]:
    return [1, 2, 3]


@asset(partitions_def=DAYS)
def daily(context) -> str:
    return f"day {context.partition_key}"


@asset
def customers() -> list[str]:
    return ["ann", "bob"]


@asset(ins={"alpha_orders": AssetIn(key="orders")})
def report(alpha_orders: list[int]) -> int:
    return sum(alpha_orders)


@op
def extract() -> dict:
    print("extracting")  # lands in the compute logs
    return {"rows": 3}


@op
def load(data: dict) -> int:
    return data["rows"]


@job
def etl() -> None:
    load(extract())


def alpha_defs() -> Definitions:
    """Repo alpha as the location entry point would serve it."""
    return inject_io_manager(Definitions(assets=[orders, daily], jobs=[etl]))


def beta_defs() -> Definitions:
    """Repo beta: its own 'daily' (same key as alpha's) and a report reading alpha's orders."""
    return inject_io_manager(Definitions(assets=[customers, daily, repo_asset("alpha", "orders"), report], jobs=[etl]))


def alpha_etl():
    return alpha_defs().resolve_job_def("etl")


def beta_etl():
    return beta_defs().resolve_job_def("etl")


# -- fixtures -------------------------------------------------------------------
@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every S3 API call (operation, key or prefix) made by clients created from now on."""
    calls: list[tuple[str, str]] = []

    def record(model, params, **_kwargs) -> None:
        calls.append((model.name, params.get("Key", params.get("Prefix", ""))))

    handlers = [*botocore.handlers.BUILTIN_HANDLERS, ("before-parameter-build.s3", record)]
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", handlers)
    # Handlers are registered when a botocore session is created. dagster-aws's compute log
    # manager builds its client from boto3's process-wide default session (``boto3.resource``),
    # which an earlier test may already have created without the hook: start a new one here.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return calls


@pytest.fixture
def bucket(moto) -> str:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def as_repo(monkeypatch: pytest.MonkeyPatch, bucket: str):
    """Set the environment a platform injects into repo ``name``'s code server."""

    def set_env(name: str, read: str = "") -> None:
        monkeypatch.setenv("META_DEPLOYER_REPO", name)
        monkeypatch.setenv("META_DEPLOYER_PREFIX", f"repos/{name}")
        monkeypatch.setenv("META_DEPLOYER_BUCKET", bucket)
        monkeypatch.delenv("META_DEPLOYER_STORAGE_DIR", raising=False)
        monkeypatch.setenv("META_DEPLOYER_READ_ACCESS", read)

    return set_env


@pytest.fixture
def instance(tmp_path: Path, bucket: str) -> Iterator[DagsterInstance]:
    """A real instance whose compute logs go to S3 through the per-repo manager."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "compute_logs:\n"
        "  module: meta_deployer_runtime.compute_logs\n"
        "  class: RepoComputeLogManager\n"
        f"  config: {{bucket: {bucket}, local_dir: {tmp_path / 'staging'}}}\n"
    )
    with DagsterInstance.from_config(str(home)) as inst:
        yield inst


def run_as_location(instance: DagsterInstance, job_fn, location: str):
    """Execute ``job_fn()``'s job as a run of code location ``location`` (what the daemon launches)."""
    recon = reconstructable(job_fn)
    job_def = recon.get_definition()
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin(location), "__repository__"), job_def.name)
    run = instance.create_run_for_job(
        job_def, run_config=IN_PROCESS, remote_job_origin=origin, job_code_origin=recon.get_python_origin()
    )
    result = execute_run(recon, run, instance)
    assert result.success
    return run


def bucket_keys() -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def read_object(key: str):
    return pickle.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


# -- tests --------------------------------------------------------------------------
def test_two_repos_store_only_under_their_own_prefix(s3_calls, as_repo, instance) -> None:
    s3_calls.clear()  # drop the fixtures' set-up calls (CreateBucket)
    runs = {}
    for name, defs_fn, assets in (("alpha", alpha_defs, [orders]), ("beta", beta_defs, [customers])):
        as_repo(name)
        defs = defs_fn()
        resources = {"io_manager": defs.resources["io_manager"]}
        assert materialize(assets, resources=resources).success
        assert materialize([daily], resources=resources, partition_key="2024-01-02").success
        assert defs.resolve_job_def("etl").execute_in_process().success
        runs[name] = run_as_location(instance, alpha_etl if name == "alpha" else beta_etl, name)
    calls_by_code = list(s3_calls)  # before the test's own listing below

    keys = bucket_keys()
    for key in keys:
        owner = key.split("/")[1]
        assert key.startswith((f"repos/{owner}/assets/", f"repos/{owner}/runs/", f"repos/{owner}/logs/")), key
        assert owner in ("alpha", "beta"), key
    assert {"repos/alpha/assets/orders", "repos/alpha/assets/daily/2024-01-02"} <= set(keys)
    assert {"repos/beta/assets/customers", "repos/beta/assets/daily/2024-01-02"} <= set(keys)
    assert read_object("repos/alpha/assets/daily/2024-01-02") == "day 2024-01-02"
    for name, run in runs.items():
        assert read_object(f"repos/{name}/runs/{run.run_id}/extract/result") == {"rows": 3}
        assert f"repos/{name}/runs/{run.run_id}/load/result" in keys
        logs = [k for k in keys if k.startswith(f"repos/{name}/logs/{run.run_id}/compute_logs/")]
        assert any(k.endswith(".out") for k in logs), keys
    # The logs read back through the instance, as the UI reads them.
    captured = [e for e in instance.all_logs(runs["alpha"].run_id) if e.dagster_event and e.dagster_event.event_type_value == "LOGS_CAPTURED"]
    file_key = captured[0].dagster_event.event_specific_data.file_key
    with DagsterInstance.from_config(instance.root_directory) as reader:  # a fresh process's view, like the webserver
        log_key = reader.compute_log_manager.build_log_key_for_run(runs["alpha"].run_id, file_key)
        assert b"extracting" in reader.compute_log_manager.get_log_data(log_key).stdout

    # Every call the code made stayed inside the repos' own prefixes.
    assert any(op == "PutObject" and key.startswith("repos/beta/logs/") for op, key in calls_by_code)
    for operation, key in calls_by_code:
        assert key.startswith(("repos/alpha/", "repos/beta/")), (operation, key)


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(dict(key=AssetKey(["..", "beta", "assets", "orders"])), id="dotdot-key"),
        pytest.param(dict(key=AssetKey(["..", "..", "system", "x"])), id="dotdot-root"),
        pytest.param(dict(name="stolen", metadata={"meta_deployer/repo": "beta"}), id="other-repo"),
        pytest.param(dict(name="shared_write", metadata={"meta_deployer/repo": "shared"}), id="shared"),
        pytest.param(dict(name="p", partitions_def=StaticPartitionsDefinition(["../../beta/assets/orders"])), id="dotdot-partition"),
        pytest.param(dict(name="q", partitions_def=StaticPartitionsDefinition(["/abs"])), id="absolute-partition"),
    ],
)
def test_a_write_aimed_outside_is_refused_without_any_s3_call(s3_calls, as_repo, hostile) -> None:
    as_repo("alpha")
    s3_calls.clear()

    @asset(**hostile)
    def evil() -> str:
        return "payload"

    defs = inject_io_manager(Definitions(assets=[evil]))
    partition = evil.partitions_def.get_partition_keys()[0] if evil.partitions_def else None
    result = materialize(
        [evil], resources={"io_manager": defs.resources["io_manager"]}, partition_key=partition, raise_on_error=False
    )
    assert not result.success
    errors = [e for e in result.all_events if e.is_failure]
    assert "StorageIsolationError" in str(errors[0].event_specific_data.error)
    # The only S3 call is dagster-aws's start-up listing of alpha's own prefix: the write made none.
    assert s3_calls == [("ListObjects", "repos/alpha/")]
    assert bucket_keys() == []


def test_cross_repo_read_fails_until_granted(s3_calls, as_repo) -> None:
    as_repo("alpha")
    assert materialize([orders], resources={"io_manager": alpha_defs().resources["io_manager"]}).success
    source = repo_asset("alpha", "orders")

    as_repo("beta")  # no grant
    s3_calls.clear()
    with pytest.raises(StorageIsolationError, match="may not read the assets of repo 'alpha'"):
        materialize([source, report], resources={"io_manager": beta_defs().resources["io_manager"]})
    assert not [c for c in s3_calls if c[1].startswith("repos/alpha/")], "a refused read must not reach S3"

    as_repo("beta", read="alpha")  # the spec's access.read: [alpha]
    result = materialize([source, report], resources={"io_manager": beta_defs().resources["io_manager"]})
    assert result.success and result.output_for_node("report") == 6
    assert ("GetObject", "repos/alpha/assets/orders") in s3_calls
    assert "repos/beta/assets/report" in bucket_keys()
    assert not [k for k in bucket_keys() if k.startswith("repos/alpha/") and k != "repos/alpha/assets/orders"]


def test_shared_is_readable_by_every_repo(as_repo) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key="repos/shared/assets/orders", Body=pickle.dumps([10, 20]))
    as_repo("beta")
    result = materialize(
        [repo_asset("shared", "orders"), report], resources={"io_manager": beta_defs().resources["io_manager"]}
    )
    assert result.success and result.output_for_node("report") == 30


def test_every_s3_call_of_every_io_path_is_allowed_by_the_task_role_with_its_conditions(s3_calls, as_repo, instance) -> None:
    """What the repo's code does in S3 must pass its real task role, s3:prefix condition included:
    moto evaluates no conditions, so the recorded calls are checked against the generated policy."""
    from iam_eval import allowed, s3_call_allowed

    from meta_deployer.platforms.aws.resources.task_role import task_role_policy

    boto3.client("s3").put_object(Bucket=BUCKET, Key="repos/shared/assets/orders", Body=pickle.dumps([10, 20]))
    as_repo("alpha")
    assert materialize([orders], resources={"io_manager": alpha_defs().resources["io_manager"]}).success
    policy = task_role_policy(BUCKET, "beta", ["alpha"])
    assert not allowed(policy, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "repos/"})  # the evaluator bites

    as_repo("beta", read="alpha")
    s3_calls.clear()
    resources = {"io_manager": beta_defs().resources["io_manager"]}
    assert materialize([customers], resources=resources).success  # first write: the key does not exist yet
    assert materialize([customers], resources=resources).success  # overwrite
    assert materialize([daily], resources=resources, partition_key="2024-01-01").success
    assert materialize([repo_asset("alpha", "orders"), report], resources=resources).success  # granted read
    assert materialize([repo_asset("shared", "orders"), report], resources=resources).success  # shared read
    run_as_location(instance, beta_etl, "beta")  # op outputs and compute logs
    io = beta_defs().resources["io_manager"].create_io_manager(None)
    assert io.path_exists(__import__("upath").UPath("repos/beta/assets/customers"))
    assert not io.path_exists(__import__("upath").UPath("repos/beta/assets/never_written"))

    calls = list(s3_calls)
    assert calls, "nothing was recorded"
    refused = [c for c in calls if not s3_call_allowed(policy, BUCKET, *c)]
    assert not refused, f"calls the task role would refuse on real AWS: {refused}"
    # S3 answers GetObject/HeadObject of a missing key with 403 under this role: existence is
    # never asked that way, so no object read may come before the object's first write.
    written: set[str] = set(bucket_keys()) - {k for op, k in calls if op == "PutObject"}
    for operation, key in calls:
        if operation == "PutObject":
            written.add(key)
        elif operation in ("GetObject", "HeadObject"):
            assert key in written, f"{operation} {key} before it exists: real S3 would answer 403 AccessDenied"
