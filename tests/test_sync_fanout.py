"""sync-repos fans out: one queued, tagged update_repo run per moved repo (real instance, real git).

The unit test runs the sync_repos job against a real instance (the project's
DAGSTER_HOME with this repository's dagster.yaml) and reads the queue back; the
e2e test runs `make sync-repos` beside a real `dagster dev`, whose daemon
launches the queued runs, and checks the repos end deployed.
"""

from __future__ import annotations

import re
import time

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, validate_run_config

from devkit import dagster_dev, definitions_py, run_make
from meta_deployer import definitions as d
from meta_deployer import fanout, naming
from meta_deployer.pipeline import Deployer
from meta_deployer.runconfig import deploy_run_config
from meta_deployer.spec import load_spec, parse_spec


def _config(project, name: str, remote) -> None:
    spec = parse_spec({"name": name, "git_url": remote.url, "python_file": "definitions.py"}, "test")
    path = project.repos / name / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec.to_config(), sort_keys=False))


def _update_runs(instance: DagsterInstance):
    return instance.get_runs(RunsFilter(job_name="update_repo"))


def test_sync_queues_one_update_run_per_moved_repo(project, git_remote):
    remotes = {n: git_remote(n, {"definitions.py": definitions_py(n.replace("-", "_"))}) for n in ("alpha", "bravo", "charlie")}
    for name in ("alpha", "bravo"):
        _config(project, name, remotes[name])
        Deployer().deploy(load_spec(project.repos / name / "config.yml"))
    remotes["alpha"].commit({"definitions.py": definitions_py("alpha", "alpha_two")})  # moved: new commit
    _config(project, "charlie", remotes["charlie"])  # moved: never deployed; bravo is up to date

    with DagsterInstance.get() as instance:
        result = d.defs.get_job_def("sync_repos").execute_in_process(instance=instance)
        assert result.success
        submitted = result.output_for_node("submit_moved")
        assert sorted(submitted) == ["alpha", "charlie"]
        runs = {r.tags[naming.RUN_TAG_KEY]: r for r in _update_runs(instance)}
        assert sorted(runs) == ["alpha", "charlie"]
        for name, run in runs.items():
            assert run.run_id == submitted[name]
            assert run.status == DagsterRunStatus.QUEUED  # no daemon here: they wait in the queue
            assert run.tags["meta_deployer/sync_run"] == result.run_id
            assert run.remote_job_origin.repository_origin.code_location_origin.location_name == naming.SELF_LOCATION
            spec = load_spec(project.repos / name / "config.yml")
            assert run.run_config == fanout.update_run_config(deploy_run_config(spec), "dev")
            assert run.run_config["resources"] == {"deployer": {"config": {"platform": "dev"}}}
            assert validate_run_config(d.defs.get_job_def("update_repo"), run.run_config)

        # Run again before any daemon ran: the same runs are reported, none are added.
        again = d.defs.get_job_def("sync_repos").execute_in_process(instance=instance)
        assert again.output_for_node("submit_moved") == submitted
        assert len(_update_runs(instance)) == 2
        assert not fanout.daemon_running(instance)
        assert "stay QUEUED" in fanout.queue_notice(instance, 2)


@pytest.mark.e2e
def test_make_sync_repos_queues_runs_that_the_daemon_deploys(project, git_remote):
    remotes = {n: git_remote(n, {"definitions.py": definitions_py(n)}) for n in ("east", "west")}
    for name, remote in remotes.items():
        _config(project, name, remote)
    with dagster_dev(project) as url:
        # The daemon of `dagster dev` must be heartbeating before the notice can say it runs.
        with DagsterInstance.get() as instance:
            deadline = time.monotonic() + 90
            while not fanout.daemon_running(instance) and time.monotonic() < deadline:
                time.sleep(1)
        out = run_make(project, "sync-repos", env={"DAGSTER_WEBSERVER_URL": url}, timeout=300)
        text = out.stdout + out.stderr
        run_ids = dict(re.findall(r"(east|west): submitted update_repo run ([0-9a-f-]{36})", text))
        assert sorted(run_ids) == ["east", "west"], text[-3000:]
        assert "the running daemon launches them" in text
        deadline = time.monotonic() + 240
        with DagsterInstance.get() as instance:
            while time.monotonic() < deadline:
                runs = [instance.get_run_by_id(i) for i in run_ids.values()]
                if all(r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) for r in runs):
                    break
                time.sleep(2)
            assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * 2, [(r.run_id, r.status) for r in runs]
    for name, remote in remotes.items():
        record = Deployer().registry.get(name)
        assert record is not None and record.commit == remote.head()
