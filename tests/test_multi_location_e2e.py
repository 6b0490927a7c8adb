"""Repositories with several code locations, end to end on the dev platform (issue 13).

Real git repositories laid out like real ones, added with the two-argument ``make add-repo``:

- a ``dagster_cloud.yaml`` declaring three locations in subfolders (src layouts, a package, a file),
  each with its own dependencies;
- a dg workspace with two projects (one src layout, one not), each with its own pyproject.toml;
- a repository with two undeclared projects: an error listing them, then ``WORKING_DIRECTORY=``.

One real ``dagster dev`` serves the whole module: every location is LOADED with its assets, and
each location's asset is materialized under its own prefix. ``update-repo``, ``list-repos``,
``repo-logs`` and ``remove-repo`` act on all of a repository's locations. A repository that needs a
Python this machine lacks, or pins a Dagster outside the window, fails before anything is built.
"""

from __future__ import annotations

import textwrap
import time

import pytest

from dagster_ui import LAUNCH, RUN_STATUS, wait_for_location
from meta_deployer.webserver import graphql
from devkit import Project, dagster_dev, run_make
from gitrepo import GitRemote

pytestmark = pytest.mark.e2e


def asset_module(*names: str, imports: str = "") -> str:
    body = "\n".join(f"@dg.asset\ndef {n}() -> int:\n    return {i}\n" for i, n in enumerate(names))
    return f"import dagster as dg\n{imports}\n\n{body}\n\ndefs = dg.Definitions(assets=[{', '.join(names)}])\n"


CLOUD = {
    "dagster_cloud.yaml": textwrap.dedent("""\
        locations:
          - location_name: ingest
            code_source:
              module_name: ingest_pkg.definitions
            working_directory: ingest
          - location_name: Reports_Team
            code_source:
              package_name: reports
            working_directory: reports
          - location_name: ml
            code_source:
              python_file: defs.py
            working_directory: ml
        """),
    # src layout, own requirements.txt (six is imported by the asset module: its own deps are installed)
    "ingest/requirements.txt": "six\n",
    "ingest/src/ingest_pkg/__init__.py": "",
    "ingest/src/ingest_pkg/definitions.py": asset_module("ingest_rows", imports="import six  # noqa: F401"),
    # src layout with a package as code source and its own pyproject.toml
    "reports/pyproject.toml": '[project]\nname = "reports"\nversion = "0.1"\ndependencies = ["backoff"]\n',
    "reports/src/reports/__init__.py": asset_module("weekly_report", imports="import backoff  # noqa: F401"),
    "ml/requirements.txt": "colorama\n",
    "ml/defs.py": asset_module("model", imports="import colorama  # noqa: F401"),
    "README.md": "three locations\n",
}

DG_WORKSPACE = {
    "pyproject.toml": textwrap.dedent("""\
        [tool.dg]
        directory_type = "workspace"

        [[tool.dg.workspace.projects]]
        path = "projects/alpha"

        [[tool.dg.workspace.projects]]
        path = "projects/beta"
        """),
    "projects/alpha/pyproject.toml": textwrap.dedent("""\
        [project]
        name = "alpha"
        version = "0.1"
        requires-python = ">=3.10"
        dependencies = ["six"]

        [tool.dg]
        directory_type = "project"

        [tool.dg.project]
        root_module = "alpha"
        """),
    "projects/alpha/src/alpha/__init__.py": "",
    "projects/alpha/src/alpha/definitions.py": asset_module("alpha_asset", imports="import six  # noqa: F401"),
    "projects/beta/pyproject.toml": '[project]\nname = "beta"\nversion = "0.1"\ndependencies = []\n\n[tool.dg.project]\nroot_module = "beta"\n',
    "projects/beta/beta/__init__.py": "",
    "projects/beta/beta/definitions.py": asset_module("beta_asset"),
}

UNDECLARED = {
    "proj_one/pyproject.toml": '[tool.dagster]\nmodule_name = "one.definitions"\n',
    "proj_one/one/__init__.py": "",
    "proj_one/one/definitions.py": asset_module("one_asset"),
    "proj_two/pyproject.toml": '[tool.dagster]\nmodule_name = "two.definitions"\n',
    "proj_two/two/__init__.py": "",
    "proj_two/two/definitions.py": asset_module("two_asset"),
}

EXPECTED = {
    "cloud-ingest": "ingest_rows",
    "cloud-reports-team": "weekly_report",
    "cloud-ml": "model",
    "dgws-alpha": "alpha_asset",
    "dgws-beta": "beta_asset",
    "twoproj": "two_asset",
}


def materialize_all(url: str, assets: dict[str, str], timeout: float = 240) -> dict[str, str]:
    """Materialize one asset of each location, all launched at once (relaunched while the daemon has not
    yet re-read workspace.yaml, as dagster_ui.materialize_when_daemon_ready does); each run's status."""
    deadline = time.monotonic() + timeout
    status: dict[str, str] = {}
    runs: dict[str, str] = {}
    while time.monotonic() < deadline and any(status.get(loc) != "SUCCESS" for loc in assets):
        for location, asset in assets.items():
            if status.get(location) in (None, "FAILURE", "CANCELED") and location not in runs:
                params = {
                    "selector": {"repositoryLocationName": location, "repositoryName": "__repository__",
                                 "jobName": "__ASSET_JOB", "assetSelection": [{"path": [asset]}]},
                    "mode": "default",
                }
                result = graphql(url, LAUNCH, {"params": params})["launchRun"]
                assert result["__typename"] == "LaunchRunSuccess", result
                runs[location] = result["run"]["runId"]
        time.sleep(2)
        for location, run_id in list(runs.items()):
            status[location] = graphql(url, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
            if status[location] in ("SUCCESS", "FAILURE", "CANCELED"):
                del runs[location]
    return status


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One project, three real repositories, and one real `dagster dev` for the whole module."""
    root = tmp_path_factory.mktemp("multi")
    project = Project(root / "project")
    project.repos.mkdir(parents=True)
    (project.root / "dagster_home").mkdir()
    from conftest import ROOT

    (project.root / "dagster_home" / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    remotes = {
        "cloud": GitRemote.create(root / "cloud.git-src", CLOUD),
        "dgws": GitRemote.create(root / "dgws.git-src", DG_WORKSPACE),
        "twoproj": GitRemote.create(root / "twoproj.git-src", UNDECLARED),
    }
    with dagster_dev(project) as url:
        yield project, remotes, url


def make(project: Project, url: str, *args: str, check: bool = True):
    return run_make(project, *args, env={"DAGSTER_WEBSERVER_URL": url}, check=check, timeout=900)


# The tests below run in this order on the module's one webserver; each starts where the one before left off.


def test_add_repo_deploys_every_declared_location(env):
    project, remotes, url = env

    # Undeclared candidates: the error lists them and says how to choose; nothing is written.
    before = project.workspace_bytes()
    failed = make(project, url, "add-repo", f"REPO_URL={remotes['twoproj'].url}", "REPO_NAME=twoproj", check=False)
    assert failed.returncode != 0
    out = failed.stdout + failed.stderr
    assert "proj_one" in out and "proj_two" in out and "WORKING_DIRECTORY=" in out
    assert not (project.repos / "twoproj").exists() and project.workspace_bytes() == before
    make(project, url, "add-repo", f"REPO_URL={remotes['twoproj'].url}", "REPO_NAME=twoproj", "WORKING_DIRECTORY=proj_two")

    # Declared locations: two arguments deploy every one of them, and config.yml records them.
    make(project, url, "add-repo", f"REPO_URL={remotes['cloud'].url}", "REPO_NAME=cloud")
    make(project, url, "add-repo", f"REPO_URL={remotes['dgws'].url}", "REPO_NAME=dgws")
    config = (project.repos / "cloud" / "config.yml").read_text()
    assert "locations:" in config and "reports-team" in config and "working_directory: ingest" in config
    assert "projects/alpha" in (project.repos / "dgws" / "config.yml").read_text()


def test_each_location_loads_and_materializes_under_its_own_prefix(env):
    project, _, url = env
    for location, asset in EXPECTED.items():
        wait_for_location(url, location, assets=[asset])
    assert materialize_all(url, EXPECTED) == {location: "SUCCESS" for location in EXPECTED}
    for location, asset in EXPECTED.items():
        assert (project.work / "storage" / "repos" / location / "assets" / asset).is_file(), location

    # The dg project's folder-derived name never reaches the log as a mismatch with the location's name.
    assert "does not match the name" not in (project.root / "dagster-dev.log").read_text()


def test_list_logs_update_and_remove_act_on_all_locations(env):
    project, remotes, url = env
    listed = make(project, url, "list-repos").stdout
    for location in EXPECTED:
        assert location in listed
    assert listed.count("LOADED") >= len(EXPECTED)
    logs = make(project, url, "repo-logs", "REPO_NAME=cloud").stdout
    assert "==> cloud-ingest <==" in logs and "loading location cloud-ml" in logs

    # A second add changes nothing; an update after a commit redeploys the one location that changed.
    workspace = project.workspace_bytes()
    again = make(project, url, "update-repo", "REPO_NAME=cloud")
    again = again.stdout + again.stderr
    assert project.workspace_bytes() == workspace and again.count("already serves") >= 3
    remotes["cloud"].commit({"ml/defs.py": asset_module("model", "model_v2", imports="import colorama  # noqa: F401")})
    make(project, url, "update-repo", "REPO_NAME=cloud-ml")  # a location's name updates its repository
    wait_for_location(url, "cloud-ml", assets=["model", "model_v2"])
    wait_for_location(url, "cloud-ingest", assets=["ingest_rows"])

    # One location alone cannot be removed (config.yml still lists it); the repository removes them all.
    refused = make(project, url, "remove-repo", "REPO_NAME=cloud-ml", check=False)
    assert refused.returncode != 0 and "remove-repo REPO_NAME=cloud" in refused.stdout + refused.stderr
    make(project, url, "remove-repo", "REPO_NAME=cloud")
    for location in ("cloud-ingest", "cloud-reports-team", "cloud-ml"):
        wait_for_location(url, location, present=False)
    wait_for_location(url, "dgws-alpha", assets=["alpha_asset"])
    assert not (project.repos / "cloud").exists()
    assert "cloud-" not in project.workspace.read_text()
    assert (project.work / "storage" / "repos" / "cloud-ml" / "assets" / "model").is_file()  # data kept


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"pyproject.toml": '[project]\nname = "x"\nversion = "0"\nrequires-python = ">=3.99"\ndependencies = []\n',
          "definitions.py": asset_module("a")}, ["requires Python >=3.99", "available here"]),
        ({"requirements.txt": "dagster==1.5.0\n", "definitions.py": asset_module("a")},
         ["dagster 1.5.0", "outside the Dagster releases"]),
    ],
    ids=["requires-python", "stale-pin"],
)
def test_unmet_python_or_stale_pin_fails_before_building(env, tmp_path, files, expected):
    project, _, url = env
    remote = GitRemote.create(tmp_path / "r.git-src", files)
    before = project.workspace_bytes()
    result = make(project, url, "add-repo", f"REPO_URL={remote.url}", "REPO_NAME=picky", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    for text in expected:
        assert text in out, out[-3000:]
    assert "No solution found" not in out  # the version error, not a resolver dump
    assert project.workspace_bytes() == before
    assert not (project.repos / "picky").exists()
    assert not [p for p in (project.work / "venvs").glob("picky-*") if p.is_dir()]  # no virtualenv was made
