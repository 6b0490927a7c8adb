"""The floor of a no-op deploy, per platform, measured side by side in one run (no timing asserts).

A no-op ``make update-repo`` (nothing changed) should cost what any job of this code location
costs under ``dagster job execute``, and little more. This bench measures, in one run:

- **the floor**: ``dagster job execute`` of an empty one-op job (in-process executor) in a module
  that imports ``meta_deployer.definitions`` first, so it pays the same imports and instance
  start-up as a deploy run, with the same environment;
- **the no-op** ``make update-repo`` of an already deployed repo, on the ``dev`` platform and, when
  a Docker engine and registry are there (``source .ci/services.sh``), on ``docker``;

and prints each platform's no-op / floor ratio (the goal is at most 1.2).

Run: `.venv/bin/python bench/bench_noop.py` (or `make bench`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from devkit import definitions_py  # noqa: E402
from gitrepo import GitRemote  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))

FLOOR_MODULE = '''\
import meta_deployer.definitions  # noqa: F401  (the same imports as a deploy run)
import dagster as dg


@dg.op
def nothing() -> None:
    pass


@dg.job(executor_def=dg.in_process_executor)
def empty():
    nothing()
'''


def project_env(tmp: Path, platform: str) -> dict[str, str]:
    project = tmp / platform
    (project / "repos").mkdir(parents=True)
    (project / "dagster_home").mkdir()
    env = {
        **os.environ,
        "META_DEPLOYER_ROOT": str(project),
        "META_DEPLOYER_REPOS_DIR": str(project / "repos"),
        "META_DEPLOYER_WORKSPACE": str(project / "workspace.yaml"),
        "META_DEPLOYER_WORK_DIR": str(project / ".meta_deployer"),
        "META_DEPLOYER_PLATFORM": platform,
        "DAGSTER_HOME": str(project / "dagster_home"),
        "DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9",
    }
    if platform == "docker":
        env.update(
            META_DEPLOYER_REGISTRY=os.environ["META_DEPLOYER_TEST_REGISTRY"],
            META_DEPLOYER_DOCKER_PORT_BASE="47400",
            META_DEPLOYER_DOCKER_PORT_PAIRS="100",
            META_DEPLOYER_DOCKER_DRAIN_TIMEOUT="0",
        )
    return env


def timed(command: list[str], env: dict[str, str], cwd: Path = ROOT, expect: str | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if expect is not None and expect not in done.stdout + done.stderr:
        raise SystemExit(f"expected {expect!r} in the output of {' '.join(command)}:\n{(done.stdout + done.stderr)[-3000:]}")
    return elapsed


def make(env: dict[str, str], *args: str) -> list[str]:
    return ["make", "--no-print-directory", "-C", str(ROOT), *args]


def measure(tmp: Path, platform: str, remote: GitRemote) -> dict[str, float]:
    env = project_env(tmp, platform)
    name = f"noop{uuid.uuid4().hex[:6]}"
    timed(make(env, "add-repo", f"REPO_URL={remote.url}", f"REPO_NAME={name}"), env)
    floor_file = tmp / f"floor_{platform}.py"
    floor_file.write_text(FLOOR_MODULE)
    dagster = str(Path(sys.executable).parent / "dagster")
    try:
        floor, noop = [], []
        for _ in range(ROUNDS):  # interleaved, so drift on the machine hits both alike
            floor.append(timed([dagster, "job", "execute", "-f", str(floor_file), "-j", "empty"], env))
            noop.append(timed(make(env, "update-repo", f"REPO_NAME={name}"), env, expect="nothing to do"))
        return {"floor": min(floor), "no-op": min(noop)}
    finally:
        subprocess.run(make(env, "remove-repo", f"REPO_NAME={name}", "PURGE=1"), env=env, capture_output=True)


def main() -> None:
    platforms = ["dev"]
    if os.environ.get("DOCKER_HOST") and os.environ.get("META_DEPLOYER_TEST_REGISTRY"):
        platforms.append("docker")
    else:
        print("(docker skipped: source .ci/services.sh for a Docker engine and registry)")
    with tempfile.TemporaryDirectory(prefix="bench-noop-") as tmp:
        remote = GitRemote.create(Path(tmp) / "remote", {"definitions.py": definitions_py("a")})
        try:
            results = {platform: measure(Path(tmp), platform, remote) for platform in platforms}
        finally:  # the dev deploys' code servers outlive them
            from meta_deployer.platforms.devservers import DevServers

            work = Path(tmp) / "dev" / ".meta_deployer"
            DevServers(work, work / "logs").stop_all(log=lambda _line: None)
    print(f"no-op `make update-repo` against the floor (an empty job under `dagster job execute`), best of {ROUNDS}:")
    for platform, r in results.items():
        print(f"  {platform:<7} floor {r['floor']:6.2f} s   no-op {r['no-op']:6.2f} s   ratio {r['no-op'] / r['floor']:5.2f}")


if __name__ == "__main__":
    main()
