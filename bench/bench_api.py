"""The REST API: ``GET /v1/repositories`` with 200 repos (p50, p99), and a signed webhook -> its run
launched, in one run, against a real ``dagster dev`` and a real uvicorn (no timing asserts).

200 repos have a config.yml and a deployment record (written once the webserver runs, so the workspace
holds only the meta_deployer location) (one of them on a real git repository); the
webserver answers the live status of each listing. Then WEBHOOKS signed GitHub pushes to that
repository's branch: each is timed from the POST to its answer, to its update_repo run existing (launchRun
answered: in the answer, or listed among the repo's operations when the launch outlived the answer), and
to the run leaving the queue (the daemon launched it). The repo's python_file is missing at its head, so
each run fails at its first step without building anything. Prints the figures, and the ratio of the
listing's p50 to a /healthz round trip (which makes the one GraphQL call a listing makes too).

Run: `.venv/bin/python bench/bench_api.py` (or `make bench`).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from apikit import api_server, create_token, webhook_operation  # noqa: E402
from devkit import Project, dagster_dev  # noqa: E402
from gitrepo import GitRemote  # noqa: E402

REPOS = 200
LISTINGS = 200
WEBHOOKS = 5
TIMEOUT_S = 120


def seed(project: Project, remote: GitRemote) -> None:
    """200 config.yml files and deployment records (what 200 deploys leave), written as the deployer does."""
    from meta_deployer.settings import Settings
    from meta_deployer.spec import dump_spec, parse_spec
    from meta_deployer.state import Deployment, record_store

    store = record_store(Settings.from_env())
    specs = []
    for i in range(REPOS):
        name = f"team-{i:03d}"
        url = remote.url if i == 0 else f"https://github.com/acme/{name}.git"
        specs.append(parse_spec({"name": name, "git_url": url, "python_file": "missing.py"}, "bench"))
    # Records first, each with its config's hash: the repos_sensor then sees every config as deployed.
    for i, spec in enumerate(specs):
        store.put(Deployment(
            name=spec.name, git_url=spec.git_url, branch="main", commit=f"{i:040x}", platform="dev",
            artifact=f"/x/{spec.name}", endpoint="", workspace_entry={}, fingerprint=f"{i:016x}",
            spec_hash=spec.content_hash(), deployed_at=time.time(), duration_s=1.0,
            metadata={"dagster_version": "1.13.27"},
        ), None)
    for spec in specs:
        (project.repos / spec.name).mkdir(parents=True)
        (project.repos / spec.name / "config.yml").write_text(dump_spec(spec))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = Project(root / "project")
        project.repos.mkdir(parents=True)
        (root / "project" / "dagster_home").mkdir()
        (root / "project" / "dagster_home" / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        os.environ.update(project.env())
        remote = GitRemote.create(root / "remote", {"README.md": "no definitions here\n"})
        with dagster_dev(project) as dagster_url:
            seed(project, remote)  # after the workspace was rendered: the records' entries stay out of it
            env = {**os.environ, "DAGSTER_WEBSERVER_URL": dagster_url, "META_DEPLOYER_API_RATE_LIMIT": "1000"}
            token = create_token(env, "read")
            with api_server(env, root) as api, api.client(token) as client:
                assert len(client.get("/v1/repositories").json()["repositories"]) == REPOS
                health, listing = [], []
                for _ in range(LISTINGS):
                    started = time.perf_counter()
                    client.get("/healthz").raise_for_status()
                    health.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    client.get("/v1/repositories").raise_for_status()
                    listing.append(time.perf_counter() - started)

                answered, created, launched = [], [], []
                admin = api.client(create_token(env, "admin"))
                push = {"ref": "refs/heads/main", "repository": {"clone_url": remote.url}}
                known: set[str] = set()
                for i in range(WEBHOOKS):
                    started = time.perf_counter()
                    response = api.github(push, f"bench-{i}")
                    answered.append(time.perf_counter() - started)
                    op = {"id": webhook_operation(admin, response, "team-000", known)}
                    known.add(op["id"])
                    created.append(time.perf_counter() - started)
                    while True:
                        status = admin.get(f"/v1/operations/{op['id']}").json()["status"]
                        if status not in ("QUEUED", "NOT_STARTED"):
                            break
                        if time.perf_counter() - started > TIMEOUT_S:
                            raise SystemExit(f"run {op['id']} still {status} after {TIMEOUT_S}s")
                        time.sleep(0.05)
                    launched.append(time.perf_counter() - started)
                    while admin.get(f"/v1/operations/{op['id']}").json()["status"] not in ("SUCCESS", "FAILURE", "CANCELED"):
                        time.sleep(0.2)  # the next one must not queue behind it
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    print(f"GET /v1/repositories, {REPOS} repos, {LISTINGS} requests: p50 {ms(statistics.median(listing))}, "
          f"p99 {ms(percentile(listing, 0.99))} (GET /healthz p50 {ms(statistics.median(health))}; "
          f"ratio {statistics.median(listing) / statistics.median(health):.1f}x)")
    print(f"signed webhook -> answered, {WEBHOOKS} pushes: p50 {ms(statistics.median(answered))}, max {ms(max(answered))}")
    print(f"signed webhook -> update_repo run created (launchRun answered): p50 {ms(statistics.median(created))}, "
          f"max {ms(max(created))}")
    print(f"signed webhook -> run launched by the daemon (left the queue): p50 {ms(statistics.median(launched))}, "
          f"max {ms(max(launched))}")


if __name__ == "__main__":
    main()
