"""Dev platform speed, measured side by side in one run (no timing asserts anywhere).

Reports:
- a no-op `make update-repo` (nothing changed) against a cold `make add-repo`, as a ratio, and the
  no-op's pipeline steps alone (in process), which shows how much is Dagster's start-up;
- a code-only `make update-repo` against the cold add;
- a repos_sensor tick over 1,000 config files: the first tick (every file new) and a
  steady tick (nothing changed), in milliseconds.

Run: `.venv/bin/python bench/bench_dev.py` (or `make bench`).
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

from devkit import Project, definitions_py  # noqa: E402
from gitrepo import GitRemote  # noqa: E402

N_CONFIGS = 1000


def timed_make(project: Project, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env={**os.environ, **project.env(), "DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9"},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def bench_deploys(tmp: Path) -> dict[str, float]:
    remote = GitRemote.create(tmp / "remote", {"definitions.py": definitions_py("a")})
    project = Project(tmp / "project")
    project.repos.mkdir(parents=True)
    cold = timed_make(project, "add-repo", f"REPO_URL={remote.url}", "REPO_NAME=bench")
    noop = min(timed_make(project, "update-repo", "REPO_NAME=bench") for _ in range(3))
    steps = timed_steps(project)
    remote.commit({"definitions.py": definitions_py("a", "b")})
    code_only = timed_make(project, "update-repo", "REPO_NAME=bench")
    return {"cold add-repo": cold, "no-op update-repo": noop, "no-op pipeline steps": steps, "code-only update-repo": code_only}


def timed_steps(project: Project) -> float:
    """The no-op deploy's own steps, in process: what the Dagster run adds to is this."""
    saved = dict(os.environ)
    os.environ.update({**project.env(), "DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9"})
    try:
        from meta_deployer.pipeline import Deployer

        deployer = Deployer()
        spec = deployer.spec_from_file("bench")
        started = time.perf_counter()
        state = deployer.deploy(spec, log=lambda _: None)
        assert state.unchanged
        return time.perf_counter() - started
    finally:
        os.environ.clear()
        os.environ.update(saved)


def bench_sensor(tmp: Path) -> dict[str, float]:
    from dagster import DagsterInstance, build_sensor_context

    repos = tmp / "repos"
    for i in range(N_CONFIGS):
        folder = repos / f"repo-{i:04d}"
        folder.mkdir(parents=True)
        (folder / "config.yml").write_text(f"name: repo-{i:04d}\ngit_url: https://example.com/r{i}.git\npython_file: d.py\n")
    os.environ["META_DEPLOYER_REPOS_DIR"] = str(repos)
    from meta_deployer.definitions import repos_sensor

    with DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        first = repos_sensor(build_sensor_context(instance=instance))
        first_s = time.perf_counter() - started
        assert len(first.run_requests) == N_CONFIGS
        started = time.perf_counter()
        steady = repos_sensor(build_sensor_context(instance=instance, cursor=first.cursor))
        steady_s = time.perf_counter() - started
        assert not steady.run_requests
    return {"first tick": first_s, "steady tick": steady_s}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dev-") as tmp:
        try:
            deploys = bench_deploys(Path(tmp))
        finally:
            from devkit import stop_dev_servers

            stop_dev_servers(Project(Path(tmp) / "project"))  # the deploys' code servers outlive them
        sensor = bench_sensor(Path(tmp))
    cold = deploys["cold add-repo"]
    print("dev platform, through the Make targets (dagster job execute):")
    for label, seconds in deploys.items():
        print(f"  {label:<24} {seconds:6.2f} s   ({seconds / cold:.2f} x cold)")
    print(f"  ratio no-op / cold: {deploys['no-op update-repo'] / cold:.3f}")
    print(f"repos_sensor over {N_CONFIGS} config files:")
    for label, seconds in sensor.items():
        print(f"  {label:<24} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
