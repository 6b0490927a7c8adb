"""Twenty repos on the dev platform under what `make dev` runs (issue 15).

`meta-deployer dev` (the command behind `make dev`: the supervised code servers, the webserver and
the daemon) serves an empty project; twenty tiny repos are added while it runs, the first nineteen
through the deploy pipeline in this process (the add_repo job's steps, reload included) and the
twentieth with a real `make add-repo` (the nineteen two at a time, as CI has two cores). Every add must reach the webserver with its reload answered
(no reload timeout), every location must be LOADED, each served by exactly one supervised code
server, and a run must materialize an asset of the twentieth. When `make dev` stops, it stops the
servers with it.

The repos are tiny (one asset, no requirements) so their virtualenvs install from uv's cache.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from dagster_ui import materialize_when_daemon_ready, wait_for_location
from devkit import dagster_dev, definitions_py, run_make
from meta_deployer.pipeline import Deployer
from meta_deployer.platforms.devservers import DevServers, grpc_ready
from meta_deployer.spec import parse_spec
from meta_deployer.webserver import location_statuses

pytestmark = pytest.mark.e2e

REPOS = 20


@pytest.mark.timeout(1800)  # twenty deploys: the default 900 s guard is too tight on a loaded machine
def test_twenty_repos_each_added_without_a_reload_timeout(project, git_remote, monkeypatch):
    names = [f"team-{i:02d}" for i in range(REPOS)]
    remotes = {n: git_remote(n, {"definitions.py": definitions_py(f"asset_{n[5:]}")}) for n in names}
    # a reload that took longer than this would be reported as a warning (and fail below)
    monkeypatch.setenv("META_DEPLOYER_RELOAD_TIMEOUT", "60")
    with dagster_dev(project, env={"META_DEPLOYER_RELOAD_TIMEOUT": "60"}) as url:
        monkeypatch.setenv("DAGSTER_WEBSERVER_URL", url)

        def add(name: str) -> list[str]:
            lines: list[str] = []
            Deployer().deploy(parse_spec({"name": name, "git_url": remotes[name].url}, "test"), log=lines.append)
            return [line for line in lines if "webserver" in line]

        # the first alone, then two at a time (CI has two cores); each deploy starts only its own
        # server and reloads once
        first = add(names[0])
        assert first and all(line.endswith("workspace reloaded") for line in first), first
        with ThreadPoolExecutor(max_workers=2) as pool:
            for name, reloads in zip(names[1:-1], pool.map(add, names[1:-1])):
                assert reloads and all(line.endswith("workspace reloaded") for line in reloads), (name, reloads)

        last = names[-1]
        added = run_make(project, "add-repo", f"REPO_URL={remotes[last].url}", f"REPO_NAME={last}",
                         env={"DAGSTER_WEBSERVER_URL": url, "META_DEPLOYER_RELOAD_TIMEOUT": "60"}, timeout=600)
        output = added.stdout + added.stderr
        assert "workspace reloaded" in output and "did not answer" not in output and "no webserver" not in output

        wait_for_location(url, last, assets=[f"asset_{last[5:]}"])
        statuses = location_statuses(url)
        assert sorted(statuses) == sorted(["meta_deployer", *names])
        assert {n: s["status"] for n, s in statuses.items()} == {n: "LOADED" for n in statuses}

        # one supervised code server per location, each answering on the port its entry names
        servers = DevServers(project.work, project.work / "logs").servers()
        assert sorted(s.name for s in servers) == names
        assert all(grpc_ready(s.port) for s in servers)

        assert materialize_when_daemon_ready(url, last, [f"asset_{last[5:]}"]) == "SUCCESS"
        assert (project.work / "storage" / "repos" / last / "assets" / f"asset_{last[5:]}").is_file()

        listed = run_make(project, "list-repos", env={"DAGSTER_WEBSERVER_URL": url}).stdout
        assert listed.count("LOADED; running (healthy)") == REPOS
    # make dev stopped the servers with Dagster
    assert not any(grpc_ready(s.port) for s in servers)
    assert DevServers(project.work, project.work / "logs").servers() == []
