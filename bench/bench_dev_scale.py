"""The dev platform at a platform team's scale (issue 15), measured in one run (no timing asserts).

Under what `make dev` runs (`meta-deployer dev`: the supervised code servers, the webserver and the
daemon), tiny repos are added one at a time through the deploy pipeline (the add_repo job's steps,
reload included, in this process). Reports:

- resident memory per location: the RSS of every process `make dev` and the code servers make up
  (webserver, daemon and their children, every supervisor and server), divided by the number of
  repo locations, with 5 and with 20 locations;
- the time of adding the 20th repo against the 1st, as a ratio (goal <= 1.2: an add costs the same
  whatever the number of deployed repos);
- the time of a `reloadWorkspace` with 20 locations (it restarts no server).

Run: `.venv/bin/python bench/bench_dev_scale.py` (or `make bench`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port, wait_for_port  # noqa: E402
from devkit import Project, definitions_py, stop_dev  # noqa: E402
from gitrepo import GitRemote  # noqa: E402

REPOS = 20
MEASURE_AT = (5, 20)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(roots: list[int]) -> set[int]:
    """``roots`` and all their descendants."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(parents.get(pid, []))
    return found


def memory_mib(dev_pid: int, work: Path) -> tuple[float, int, float]:
    """(total MiB, processes, MiB of the locations' own trees: supervisors and servers)."""
    from meta_deployer.platforms.devservers import DevServers

    supervisors = [s.pid for s in DevServers(work, work / "logs").servers()]
    pids = tree([dev_pid, *supervisors])
    own = tree(supervisors)
    return sum(rss_kib(p) for p in pids) / 1024, len(pids), sum(rss_kib(p) for p in own) / 1024


def main() -> None:
    from meta_deployer.pipeline import Deployer
    from meta_deployer.spec import parse_spec
    from meta_deployer.webserver import location_statuses, reload_workspace

    with tempfile.TemporaryDirectory(prefix="bench-dev-scale-") as tmp:
        project = Project(Path(tmp) / "project")
        project.repos.mkdir(parents=True)
        (project.root / "dagster_home").mkdir()
        (project.root / "dagster_home" / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        os.environ.update({**project.env(), "DAGSTER_WEBSERVER_URL": url, "META_DEPLOYER_RELOAD_TIMEOUT": "120"})
        with open(project.root / "dev.log", "w") as log:
            dev = subprocess.Popen(
                [str(Path(sys.executable).parent / "meta-deployer"), "dev", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        add_s: list[float] = []
        memory: dict[int, tuple[float, int, float]] = {}
        try:
            wait_for_port(port, timeout=180, proc=dev)
            for i in range(REPOS):
                name = f"team-{i:02d}"
                remote = GitRemote.create(Path(tmp) / name, {"definitions.py": definitions_py(f"asset_{i}")})
                lines: list[str] = []
                started = time.perf_counter()
                Deployer().deploy(parse_spec({"name": name, "git_url": remote.url}, "bench"), log=lines.append)
                add_s.append(time.perf_counter() - started)
                reloads = [line for line in lines if "webserver" in line]
                print(f"  add {i + 1:2d}: {add_s[-1]:6.2f} s   {reloads[-1] if reloads else ''}", flush=True)
                if i + 1 in MEASURE_AT:
                    time.sleep(5)  # let the new server settle
                    memory[i + 1] = memory_mib(dev.pid, project.work)
            statuses = location_statuses(url)
            loaded = sum(1 for s in statuses.values() if s["status"] == "LOADED")
            reload_s = []
            for _ in range(3):
                started = time.perf_counter()
                result = reload_workspace(url, timeout=300)
                reload_s.append(time.perf_counter() - started)
                assert result.reached, result.message
        finally:
            stop_dev(dev)
    print(f"dev platform at scale, under `make dev` ({loaded} of {len(statuses)} locations LOADED):")
    for n, (mib, procs, own) in memory.items():
        print(f"  {n:2d} repo locations: {mib:7.0f} MiB resident in {procs} processes = {mib / n:6.0f} MiB per location "
              f"(each location's own server and supervisor: {own / n:4.0f} MiB; the rest is the webserver and daemon)")
    print(f"  add the 1st repo {add_s[0]:6.2f} s, the {REPOS}th {add_s[-1]:6.2f} s: ratio {add_s[-1] / add_s[0]:.2f} (goal <= 1.2)")
    print(f"  reloadWorkspace with {REPOS} locations: best {min(reload_s):.2f} s of {len(reload_s)} ({', '.join(f'{s:.2f}' for s in reload_s)})")


if __name__ == "__main__":
    main()
