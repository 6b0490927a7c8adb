"""Faults stay local: a corrupt record, a killed deploy or a broken repo affects only its own repo."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devkit import definitions_py
from meta_deployer import workspace as ws
from meta_deployer.pipeline import Deployer
from meta_deployer.registry import Registry
from meta_deployer.settings import Settings
from meta_deployer.state import Deployment
from meta_deployer.spec import load_spec, parse_spec

ROOT_CLI = [sys.executable, "-m", "meta_deployer.cli"]


DAMAGES = {
    "emptied": b"",
    "truncated": b'{"name": "beta", "commit": "ab',
    "not-utf8": b"\xff\xfe not json",
    "other-name": b'{"name": "someone-else"}',
    "not-a-record": b"[1, 2, 3]",
    "wrong-fields": b'{"name": "beta", "colour": "blue"}',
    "huge": b" " * (2 << 20),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_corrupt_record_is_reported_and_never_hides_the_others(tmp_path, damage):
    settings = Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path)})
    registry = Registry(settings)
    for name in ("alpha", "beta"):
        registry.update(put=record(name))
    before = settings.workspace.read_bytes()
    (settings.state_dir / "beta.json").write_bytes(damage)
    assert registry.get("beta") is None  # its next deploy starts afresh and rewrites it
    assert set(registry.all()) == {"alpha"}
    assert "beta.json" in registry.store.corrupt()["beta"]
    registry.update(put=record("gamma"))  # another repo's deploy keeps beta's entry
    assert set(ws.read_entries(settings.workspace)) == {"alpha", "beta", "gamma"}
    registry.update(delete="gamma")
    assert settings.workspace.read_bytes() == before


def record(name: str) -> Deployment:
    entry = {"python_file": {"relative_path": f"/x/{name}.py", "location_name": name}}
    return Deployment(
        name=name, git_url="file:///x", branch="main", commit="c" * 40, platform="dev", artifact="/x", endpoint="-",
        workspace_entry=entry, fingerprint="f", spec_hash="s", deployed_at=0.0, duration_s=0.0,
    )


def test_a_corrupt_record_affects_only_its_own_repo_and_its_next_deploy_repairs_it(project, git_remote):
    damage = DAMAGES["truncated"]
    alpha = git_remote("alpha", {"definitions.py": definitions_py("a")})
    beta = git_remote("beta", {"definitions.py": definitions_py("b")})
    Deployer().deploy(parse_spec({"name": "alpha", "git_url": alpha.url}, "test"))
    Deployer().deploy(parse_spec({"name": "beta", "git_url": beta.url}, "test"))
    beta_entry = ws.read_entries(project.workspace)["beta"]
    (project.work / "state" / "beta.json").write_bytes(damage)

    # list-repos still works, and says which record is broken
    listed = subprocess.run([*ROOT_CLI, "list-repos"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    beta_row = next(line for line in listed.stdout.splitlines() if line.startswith("beta "))
    assert "corrupt record" in beta_row
    assert "beta.json" in listed.stderr
    assert "corrupt record" not in next(line for line in listed.stdout.splitlines() if line.startswith("alpha "))

    # a deploy of the healthy repo works, and keeps serving the other one
    alpha.commit({"definitions.py": definitions_py("a", "a2")})
    state = Deployer().deploy(load_spec(project.repos / "alpha" / "config.yml"))
    assert not state.unchanged
    assert ws.read_entries(project.workspace)["beta"] == beta_entry

    # the broken repo's next deploy repairs its record
    repaired = Deployer().deploy(load_spec(project.repos / "beta" / "config.yml"))
    assert Deployer().registry.get("beta").commit == beta.head()
    assert not Deployer().registry.store.corrupt()
    assert repaired.record is not None and ws.read_entries(project.workspace)["beta"] == beta_entry


def test_the_same_repo_added_twice_at_once_deploys_once_and_the_other_finds_nothing_to_do(project, git_remote):
    """Two people (or the sensor and a Make target) add one repo at the same moment."""
    from concurrent.futures import ThreadPoolExecutor

    from devkit import run_make

    from dagster import DagsterInstance

    remote = git_remote(files={"definitions.py": definitions_py("a")})
    args = ("add-repo", f"REPO_URL={remote.url}", "REPO_NAME=twice")
    # An instance that exists already, as it does wherever a sensor runs: two processes creating a
    # brand-new sqlite instance at the same moment race inside Dagster itself, not in the deployer.
    with DagsterInstance.get():
        pass
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run_make(project, *args, check=False), range(2)))
    outputs = [r.stdout + r.stderr for r in results]
    assert [r.returncode for r in results] == [0, 0], [out[-3000:] for out in outputs]
    assert sum("already serves" in out for out in outputs) == 1, outputs
    assert sum("now serves version" in out for out in outputs) == 1, outputs
    assert Deployer().registry.get("twice").commit == remote.head()
    assert list(ws.read_entries(project.workspace)) == ["twice"]
    leftovers = [p for p in project.root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".current-")]
    assert not leftovers
    versions = [p for p in (project.work / "locations" / "twice").iterdir() if not p.is_symlink()]
    assert len(versions) == 1


SLOW_TO_VALIDATE = '''\
import os
import time

import dagster as dg

if os.environ.get("META_DEPLOYER_VALIDATING"):
    time.sleep(120)  # long enough to be killed in the middle of the build


@dg.asset
def a() -> int:
    return 1


defs = dg.Definitions(assets=[a])
'''


def test_a_killed_deploy_is_failed_and_never_blocks_its_repo(project, git_remote):
    """kill -9 in the middle of a deploy: the run does not stay STARTED, and the repo deploys again."""
    import os
    import signal
    import time

    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, build_sensor_context

    from devkit import run_make
    from meta_deployer import definitions as d
    from meta_deployer.runconfig import deploy_run_config
    from meta_deployer.worker import WORKER_TAG

    remote = git_remote(files={"definitions.py": SLOW_TO_VALIDATE})
    spec = parse_spec({"name": "killed", "git_url": remote.url, "python_file": "definitions.py"}, "test")
    config = project.root / "run.yaml"
    config.write_text(__import__("yaml").safe_dump(deploy_run_config(spec)))
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    proc = subprocess.Popen(
        [dagster, "job", "execute", "-m", "meta_deployer.definitions", "-j", "add_repo", "-c", str(config),
         "--tags", '{"meta_deployer/repo": "killed"}'],
        env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        with DagsterInstance.get() as instance:
            deadline = time.monotonic() + 120
            run = None
            while time.monotonic() < deadline:
                runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
                if runs and WORKER_TAG in runs[0].tags and (project.work / "venvs").exists():
                    run = runs[0]
                    break
                time.sleep(0.5)
            assert run is not None, "the deploy never started"
            time.sleep(3)  # well inside the slow validation
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        with DagsterInstance.get() as instance:
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED  # what Dagster leaves
            result = d.dead_deploys_sensor(build_sensor_context(instance=instance))
            assert run.run_id[:8] in result.skip_message
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
            assert d.dead_deploys_sensor(build_sensor_context(instance=instance)).skip_message == "no dead deploy runs"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # nothing of the killed deploy serves, and the repo's next deploy goes through (the lease died with it)
    assert "killed" not in ws.read_entries(project.workspace)
    remote.commit({"definitions.py": definitions_py("a")})
    run_make(project, "add-repo", f"REPO_URL={remote.url}", "REPO_NAME=killed", "PYTHON_FILE=definitions.py")
    assert Deployer().registry.get("killed").commit == remote.head()
