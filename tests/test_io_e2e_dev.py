"""Storage isolation end to end on the dev platform, through the normal pipeline.

1. ``make add-repo`` deploys a repo that knows nothing about meta_deployer (its own
   virtualenv, the location entry point, the injected settings);
2. the deployed location is executed exactly as its code server loads it
   (``location.py`` run by the repo's own python, ``dagster asset materialize``);
3. its asset, a partition of another asset and its op outputs lie under
   ``repos/<name>/`` in the local store, and nothing lies under another prefix;
4. a second repo, deployed by the pipeline with ``access.read``, reads the first
   repo's asset (declared with plain Dagster metadata, no meta_deployer import) once
   the first repo's config shares with it (``access.share_with``); without the grant,
   or with only the reader's request, the same read is refused;
5. a repo that sets its own ``io_manager`` keeps it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from meta_deployer import workspace as ws
from meta_deployer.pipeline import Deployer
from meta_deployer.spec import parse_spec

pytestmark = pytest.mark.e2e

SALES = '''
import dagster as dg


@dg.asset
def orders() -> list[int]:
    return [5, 6, 7]


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["2024-01-01", "2024-01-02"]))
def daily(context) -> str:
    return "day " + context.partition_key


@dg.op
def extract() -> int:
    return 42


@dg.op
def load(value: int) -> int:
    return value


@dg.job
def etl():
    load(extract())


defs = dg.Definitions(assets=[orders, daily], jobs=[etl])
'''

REPORT = '''
import dagster as dg

# Another repo's asset: plain Dagster metadata names its owner.
orders = dg.AssetSpec("orders", metadata={"meta_deployer/repo": "sales"})


@dg.asset(ins={"orders": dg.AssetIn("orders")})
def total(orders: list[int]) -> int:
    return sum(orders)


defs = dg.Definitions(assets=[orders, total])
'''

OWN_IO = '''
import dagster as dg


@dg.asset
def kept() -> int:
    return 1


defs = dg.Definitions(assets=[kept], resources={"io_manager": dg.FilesystemIOManager(base_dir=BASE_DIR)})
'''

COMPUTE_LOGS = "\ncompute_logs:\n  module: meta_deployer_runtime.compute_logs\n  class: RepoComputeLogManager\n  config: {}\n"


def make(project, *args: str) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env={**os.environ, **project.env()},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"make {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def run_location(project, name: str, *args: str) -> subprocess.CompletedProcess:
    """Run a dagster command against ``name``'s deployed location, as its code server loads it."""
    assert ws.read_entries(project.workspace)[name]["grpc_server"]["location_name"] == name
    version = project.work / "locations" / name / "current"  # the version its code server serves
    python = version / "venv" / "bin" / "python"
    working_directory = json.loads((version / "location.json").read_text())["working_directory"]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(project.env())
    return subprocess.run(
        [str(python), "-m", "dagster", *args, "-f", str(version / "location.py"), "-d", working_directory],
        cwd=working_directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def instance_with_repo_logs(project) -> Path:
    """The project's instance, with per-repo compute logs (the dagster.yaml snippet of issue 5)."""
    config = project.root / "dagster_home" / "dagster.yaml"
    if "compute_logs:" not in config.read_text():
        config.write_text(config.read_text() + COMPUTE_LOGS)
    return config


def test_external_repo_stores_under_its_own_prefix(project, git_remote, instance_with_repo_logs) -> None:
    storage = project.work / "storage"
    sales = git_remote("sales", {"definitions.py": SALES})
    make(project, "add-repo", f"REPO_URL={sales.url}", "REPO_NAME=sales")

    for args in (["asset", "materialize", "--select", "orders"],
                 ["asset", "materialize", "--select", "daily", "--partition", "2024-01-02"],
                 ["job", "execute", "-j", "etl"]):
        done = run_location(project, "sales", *args)
        assert done.returncode == 0, done.stderr[-3000:]

    files = files_under(storage)
    assert "repos/sales/assets/orders" in files
    assert "repos/sales/assets/daily/2024-01-02" in files
    assert [f for f in files if f.startswith("repos/sales/runs/") and f.endswith("/extract/result")]
    # Nothing the repo wrote lies outside its prefix; runs without a location (CLI runs) log to system/.
    assert all(f.startswith(("repos/sales/assets/", "repos/sales/runs/", "system/logs/")) for f in files), files

    # A second repo reads sales' asset only once its spec grants it.
    report = git_remote("report", {"definitions.py": REPORT})
    Deployer().deploy(parse_spec({"name": "report", "git_url": report.url}, "test"))
    refused = run_location(project, "report", "asset", "materialize", "--select", "total")
    assert refused.returncode != 0 and "may not read the assets of repo 'sales'" in refused.stdout + refused.stderr
    # Asking is not enough: sales' own config.yml must share with report (a tenant cannot grant
    # itself another tenant's data by writing its own config).
    asked = parse_spec({"name": "report", "git_url": report.url, "access": {"read": ["sales"]}}, "test")
    said: list[str] = []
    Deployer().deploy(asked, log=said.append)
    assert any("no read access to sales" in line and "access.share_with" in line for line in said), said
    still_refused = run_location(project, "report", "asset", "materialize", "--select", "total")
    assert still_refused.returncode != 0 and "may not read the assets of repo 'sales'" in still_refused.stdout + still_refused.stderr
    sales_config = project.repos / "sales" / "config.yml"
    sales_config.write_text(sales_config.read_text() + "access:\n  share_with: [report]\n")
    Deployer().deploy(asked)
    granted = run_location(project, "report", "asset", "materialize", "--select", "total")
    assert granted.returncode == 0, granted.stderr[-3000:]
    assert (storage / "repos" / "report" / "assets" / "total").is_file()
    assert not [f for f in files_under(storage) if f.startswith("repos/report/") and "/assets/orders" in f]


def test_a_repo_with_its_own_io_manager_keeps_it(project, git_remote, tmp_path) -> None:
    own_dir = tmp_path / "own-storage"
    remote = git_remote("own", {"definitions.py": OWN_IO.replace("BASE_DIR", repr(str(own_dir)))})
    Deployer().deploy(parse_spec({"name": "own-io", "git_url": remote.url}, "test"))
    done = run_location(project, "own-io", "asset", "materialize", "--select", "kept")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (own_dir / "kept").is_file()
    assert not (project.work / "storage" / "repos" / "own-io").exists()
