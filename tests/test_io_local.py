"""The local variant of RepoIOManager (the dev platform's default): same layout as S3, same refusals."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from meta_deployer_runtime.errors import StorageIsolationError
from meta_deployer_runtime.io import RepoIOManager, inject_io_manager


@dg.asset
def orders() -> list[int]:
    return [1, 2, 3]


@dg.asset(key_prefix=["sales", "eu"], partitions_def=dg.StaticPartitionsDefinition(["2024-01-01", "nested/part"]))
def daily(context) -> str:
    return context.partition_key


@dg.op
def extract() -> int:
    return 7


@dg.op
def load(value: int) -> int:
    return value


@dg.job
def etl() -> None:
    load(extract())


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def env_for(name: str, storage: Path, read: str = "") -> dict[str, str]:
    return {
        "META_DEPLOYER_REPO": name,
        "META_DEPLOYER_PREFIX": f"repos/{name}",
        "META_DEPLOYER_STORAGE_DIR": str(storage),
        "META_DEPLOYER_READ_ACCESS": read,
    }


def test_local_layout_matches_the_s3_layout(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    defs = inject_io_manager(dg.Definitions(assets=[orders, daily], jobs=[etl]), env_for("alpha", storage))
    resources = {"io_manager": defs.resources["io_manager"]}
    assert dg.materialize([orders], resources=resources).success
    for partition in ("2024-01-01", "nested/part"):
        assert dg.materialize([daily], resources=resources, partition_key=partition).success
    run_id = defs.resolve_job_def("etl").execute_in_process().run_id
    assert files_under(storage) == [
        "repos/alpha/assets/orders",
        "repos/alpha/assets/sales/eu/daily/2024-01-01",
        "repos/alpha/assets/sales/eu/daily/nested/part",
        f"repos/alpha/runs/{run_id}/extract/result",
        f"repos/alpha/runs/{run_id}/load/result",
    ]


@pytest.mark.parametrize(
    "hostile",
    [
        dict(key=dg.AssetKey(["..", "..", "..", "outside"])),
        dict(name="to_beta", metadata={"meta_deployer/repo": "beta"}),
        dict(name="p", partitions_def=dg.StaticPartitionsDefinition(["../../../../outside"])),
    ],
    ids=["dotdot-key", "other-repo", "dotdot-partition"],
)
def test_a_write_aimed_outside_writes_nothing(tmp_path: Path, hostile: dict) -> None:
    storage = tmp_path / "storage"

    @dg.asset(**hostile)
    def evil() -> str:
        return "payload"

    partition = evil.partitions_def.get_partition_keys()[0] if evil.partitions_def else None
    manager = RepoIOManager(repo_name="alpha", storage_dir=str(storage))
    with pytest.raises(StorageIsolationError):
        dg.materialize([evil], resources={"io_manager": manager}, partition_key=partition)
    assert not files_under(tmp_path)


def test_grant_through_input_metadata(tmp_path: Path) -> None:
    """The owner may be named on the input instead of on the upstream asset."""
    storage = tmp_path / "storage"
    assert dg.materialize([orders], resources={"io_manager": RepoIOManager(repo_name="sales", storage_dir=str(storage))}).success

    @dg.asset(ins={"orders": dg.AssetIn("orders", metadata={"meta_deployer/repo": "sales"})})
    def total(orders: list[int]) -> int:
        return sum(orders)

    assets = [dg.AssetSpec("orders"), total]
    with pytest.raises(StorageIsolationError, match="access: {read: \\[sales\\]}"):
        dg.materialize(assets, resources={"io_manager": RepoIOManager(repo_name="report", storage_dir=str(storage))})
    granted = RepoIOManager(repo_name="report", storage_dir=str(storage), read_access=["sales"])
    result = dg.materialize(assets, resources={"io_manager": granted})
    assert result.success and result.output_for_node("total") == 6
    assert (storage / "repos" / "report" / "assets" / "total").is_file()


def test_opt_in_under_another_resource_key(tmp_path: Path) -> None:
    """A repo that keeps its own io_manager can still route chosen assets through the enforcing one."""
    storage = tmp_path / "storage"

    @dg.asset(io_manager_key="repo_io")
    def routed() -> int:
        return 1

    resources = {"io_manager": dg.InMemoryIOManager(), "repo_io": RepoIOManager(repo_name="alpha", storage_dir=str(storage))}
    assert dg.materialize([routed, orders], resources=resources).success
    assert files_under(storage) == ["repos/alpha/assets/routed"]
