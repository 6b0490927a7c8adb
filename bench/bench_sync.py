"""``make sync-repos`` of 8 moved repos against 1, under a real ``dagster dev`` (no timing asserts).

sync-repos queues one ``update_repo`` run per moved repo; the daemon of ``dagster dev`` launches
them concurrently up to the run queue's limits. This bench deploys 9 repos first (1 on its own
remote, 8 sharing another), starts ``dagster dev``, then pushes a commit to the first remote and
measures the time from ``make sync-repos`` to every queued run finished; then the same for a commit
that moves the 8 others; and prints the ratio. "Moved" means what sync-repos is for: deployed repos
whose branch head moved (updates, which reload only their own location), not new repos. Deployed
one after another the ratio would be near 8. Bounded: every wait times out (``TIMEOUT_S``).

Run: `.venv/bin/python bench/bench_sync.py` (or `make bench`).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from dagster import DagsterInstance, DagsterRunStatus  # noqa: E402

from devkit import Project, dagster_dev, definitions_py, run_make  # noqa: E402
from gitrepo import GitRemote  # noqa: E402

TIMEOUT_S = 300
DONE = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def deploy(project: Project, remote: GitRemote, names: list[str]) -> None:
    """Deploy ``names`` from ``remote`` before any webserver runs (in process: no reloads to wait for)."""
    from meta_deployer.pipeline import Deployer
    from meta_deployer.spec import parse_spec

    for name in names:
        spec = parse_spec({"name": name, "git_url": remote.url, "python_file": "definitions.py"}, "bench")
        Deployer().deploy(spec, log=lambda _: None)


def sync_and_wait(project: Project, url: str, expected: int) -> float:
    """`make sync-repos`, then wait for every run it queued; returns the wall time."""
    started = time.perf_counter()
    out = run_make(project, "sync-repos", env={"DAGSTER_WEBSERVER_URL": url}, timeout=TIMEOUT_S)
    run_ids = re.findall(r"submitted update_repo run ([0-9a-f-]{36})", out.stdout + out.stderr)
    assert len(run_ids) == expected, f"expected {expected} queued runs, got {run_ids}"
    with DagsterInstance.get() as instance:
        while True:
            runs = [instance.get_run_by_id(i) for i in run_ids]
            if all(r is not None and r.status in DONE for r in runs):
                break
            if time.perf_counter() - started > TIMEOUT_S:
                raise SystemExit(f"runs not done within {TIMEOUT_S}s: {[(r.run_id[:8], r.status) for r in runs]}")
            time.sleep(0.5)
    failed = [r.run_id for r in runs if r.status != DagsterRunStatus.SUCCESS]
    assert not failed, f"failed runs: {failed}"
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        project = Project(Path(tmp) / "project")
        project.repos.mkdir(parents=True)
        (project.root / "dagster_home").mkdir()
        (project.root / "dagster_home" / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        os.environ.update(project.env())
        solo = GitRemote.create(Path(tmp) / "solo", {"definitions.py": definitions_py("a")})
        shared = GitRemote.create(Path(tmp) / "shared", {"definitions.py": definitions_py("a")})
        os.environ["DAGSTER_WEBSERVER_URL"] = "http://127.0.0.1:9"  # nothing to reload yet
        deploy(project, solo, ["one"])
        deploy(project, shared, [f"many-{i}" for i in range(8)])
        with dagster_dev(project) as url:
            solo.commit({"definitions.py": definitions_py("a", "b")})
            one = sync_and_wait(project, url, 1)
            shared.commit({"definitions.py": definitions_py("a", "b")})
            eight = sync_and_wait(project, url, 8)
    print("`make sync-repos` to every queued update_repo run done, dev platform, under `dagster dev`:")
    print(f"  1 moved repo {one:6.2f} s   8 moved repos {eight:6.2f} s   ratio {eight / one:5.2f} (sequential would be ~8)")


if __name__ == "__main__":
    main()
