"""Make targets against a remote instance (META_DEPLOYER_DAGSTER_URL): `meta-deployer submit`.

Unit tests cover the pure parts of meta_deployer/remote.py (event lines, failure messages, exit
codes, following with a cursor); the one e2e test runs `make add-repo` / `update-repo` against a
real `dagster dev` and reads the runs back from that instance.
"""

from __future__ import annotations

import io

import pytest

from devkit import BROKEN, dagster_dev, definitions_py, run_make
from meta_deployer import cli, naming, remote
from meta_deployer.webserver import graphql


def test_exit_codes():
    assert remote.exit_code("SUCCESS") == 0
    assert remote.exit_code("FAILURE") == 1
    assert remote.exit_code("CANCELED") == 1
    assert remote.exit_code("STARTED") == 1


def test_event_lines_show_step_type_and_message_and_redact():
    line = remote.format_event({"message": "cloned https://u:tok@git.example.com/r.git at abc", "stepKey": "clone",
                                "eventType": None, "level": "INFO"})
    assert line.startswith("clone") and "INFO" in line and "cloned" in line and "tok" not in line
    failure = remote.format_event({"message": "Execution of step \"serve\" failed.", "stepKey": "serve",
                                   "eventType": "STEP_FAILURE", "level": "ERROR", "error": {"message": "ModuleNotFoundError: x"}})
    assert "serve" in failure and "STEP_FAILURE" in failure and "ModuleNotFoundError: x" in failure
    assert remote.format_event({"message": "", "eventType": "ENGINE_EVENT"}) is None
    assert remote.format_event({"message": "Started", "eventType": "RUN_START"}).startswith("run ")


def test_failure_message_prefers_the_step_error():
    events = [
        {"message": "ok", "level": "INFO"},
        {"message": "step failed", "eventType": "STEP_FAILURE", "level": "ERROR", "error": {"message": "boom: bad code"}},
        {"message": "Execution of run failed", "eventType": "RUN_FAILURE", "level": "ERROR"},
    ]
    assert remote.failure_message(events).startswith("boom: bad code")
    assert remote.failure_message([{"message": "kaput", "level": "ERROR"}]) == "kaput"
    assert remote.failure_message([]) == "(no failure event recorded)"


def test_follow_pages_with_the_cursor_until_the_run_ends(monkeypatch):
    statuses = iter(["STARTED", "STARTED", "FAILURE"])
    pages = {
        None: {"cursor": "1", "hasMore": True, "events": [{"message": "a", "stepKey": "clone", "level": "INFO"}]},
        "1": {"cursor": "2", "hasMore": False, "events": [{"message": "b", "stepKey": "build", "level": "INFO"}]},
        "2": {"cursor": "2", "hasMore": False, "events": []},
    }
    seen_cursors = []

    def fake_graphql(url, query, variables=None, timeout=60.0):
        if query is remote.RUN_STATUS:
            return {"runOrError": {"__typename": "Run", "status": next(statuses)}}
        seen_cursors.append(variables["cursor"])
        page = pages[variables["cursor"]]
        return {"logsForRun": {"__typename": "EventConnection", **page}}

    monkeypatch.setattr(remote, "graphql", fake_graphql)
    out = io.StringIO()
    status, events = remote.follow("http://x", "r1", out=out, sleep=lambda s: None)
    assert status == "FAILURE" and [e["message"] for e in events] == ["a", "b"]
    assert seen_cursors[:2] == [None, "1"] and set(seen_cursors[2:]) == {"2"}
    assert out.getvalue().splitlines()[0].startswith("clone")


def test_follow_gives_up_after_the_timeout(monkeypatch):
    monkeypatch.setattr(remote, "graphql", lambda url, query, variables=None, timeout=60.0: (
        {"runOrError": {"__typename": "Run", "status": "STARTED"}} if query is remote.RUN_STATUS
        else {"logsForRun": {"__typename": "EventConnection", "cursor": "0", "hasMore": False, "events": []}}))
    clock = iter(range(0, 100, 10))
    with pytest.raises(remote.RemoteRunError, match="still STARTED"):
        remote.follow("http://x", "r1", out=io.StringIO(), timeout=25, clock=lambda: next(clock), sleep=lambda s: None)


def test_bad_arguments_fail_before_anything_is_sent(project, monkeypatch):
    monkeypatch.setenv("META_DEPLOYER_DAGSTER_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(remote, "graphql", lambda *a, **k: pytest.fail("nothing may be sent"))
    assert cli.main(["submit", "add", "--name", "Bad_Name", "--url", "file:///nowhere"]) == cli.EXIT_USAGE
    assert cli.main(["submit", "update", "--name", "never-added"]) == cli.EXIT_USAGE
    assert cli.main(["submit", "remove"]) == cli.EXIT_USAGE


RUNS = """
query Runs { runsOrError { __typename ... on Runs { results { runId jobName status tags { key value } } } } }
"""


def _runs(url: str) -> list[dict]:
    return graphql(url, RUNS)["runsOrError"]["results"]


@pytest.mark.e2e
def test_make_targets_launch_and_follow_runs_on_the_remote_instance(project, git_remote):
    remote_repo = git_remote(files={"definitions.py": definitions_py("first")})
    with dagster_dev(project) as url:
        env = {"META_DEPLOYER_DAGSTER_URL": url, "DAGSTER_WEBSERVER_URL": url}

        added = run_make(project, "add-repo", f"REPO_URL={remote_repo.url}", "REPO_NAME=x", env=env, timeout=600)
        assert "launched add_repo run" in added.stdout
        assert "clone" in added.stdout and "STEP_SUCCESS" in added.stdout  # step events and log lines, streamed
        assert "ended SUCCESS" in added.stdout
        runs = _runs(url)
        assert [r["jobName"] for r in runs] == ["add_repo"] and runs[0]["status"] == "SUCCESS"
        assert {"key": naming.RUN_TAG_KEY, "value": "x"} in runs[0]["tags"]
        from meta_deployer.pipeline import Deployer

        assert "x" in Deployer().registry.all()  # the record exists

        remote_repo.commit({"definitions.py": BROKEN})
        updated = run_make(project, "update-repo", "REPO_NAME=x", env=env, check=False, timeout=600)
        assert updated.returncode != 0, updated.stdout
        assert "ended FAILURE" in updated.stderr and "no_such_module_anywhere" in updated.stderr, updated.stderr
        assert len(_runs(url)) == 2

        bad = run_make(project, "add-repo", f"REPO_URL={remote_repo.url}", "REPO_NAME=Bad_Name", env=env, check=False)
        assert bad.returncode != 0 and "REPO_NAME" in bad.stderr
        assert len(_runs(url)) == 2  # nothing was launched
