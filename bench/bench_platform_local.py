"""The local rehearsal (`make platform-local`): time from a config commit to LOADED on every replica.

Brings the rehearsal up (two webservers, daemon with DockerRunLauncher, the deployer's gRPC server,
Postgres, the S3 stand-in, a configuration repository behind `git daemon`), then measures, from
the `git commit` in the configuration repository:

- **first deploy**: a new repo until LOADED with its assets on both webservers (sensor tick, a run
  container, clone, image build, push, code server, reload of both replicas);
- **second repo**: another repo with the same dependencies (the image layers are cached);
- **config change**: a changed environment value until the new code server serves it.

The sensor ticks every ``SENSOR_INTERVAL_S`` seconds, so each figure includes up to one interval
of waiting; it is printed next to them. No asserts on time: figures only.

Run: `.venv/bin/python bench/bench_platform_local.py` (needs `source .ci/services.sh`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import yaml  # noqa: E402

from conftest import free_port  # noqa: E402
from dagster_ui import wait_for_location  # noqa: E402
from devkit import Project, definitions_py, run_make  # noqa: E402
from gitrepo import GitRemote  # noqa: E402
from platformkit import fresh_database, git_daemon  # noqa: E402

from meta_deployer.definitions import SENSOR_INTERVAL_S  # noqa: E402
from meta_deployer.platforms.images import docker_client  # noqa: E402

TIMEOUT_S = 900


def main() -> None:
    client = docker_client()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        project = Project(base / "project")
        project.root.mkdir()
        config = GitRemote.create(base / "config.git-src", {"repos/.gitkeep": ""})
        remotes = {n: GitRemote.create(base / f"{n}.git-src", {"definitions.py": definitions_py(f"{n}_asset")})
                   for n in ("alpha", "beta")}
        port = free_port()
        urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
        with git_daemon(base) as git, fresh_database() as database:
            env = {
                "META_DEPLOYER_CONFIG_GIT_URL": f"{git}/config.git-src",
                "DAGSTER_POSTGRES_URL": database,
                "DAGSTER_PORT": str(port),
                "META_DEPLOYER_DOCKER_PORT_BASE": "27000",
            }
            if os.environ.get("META_DEPLOYER_TEST_REGISTRY"):
                env["META_DEPLOYER_REGISTRY"] = os.environ["META_DEPLOYER_TEST_REGISTRY"]
            started = time.perf_counter()
            run_make(project, "platform-local", env=env, timeout=TIMEOUT_S)
            up_s = time.perf_counter() - started
            try:
                figures = {"platform-local up": up_s}
                for label, name in (("first deploy", "alpha"), ("second repo", "beta")):
                    spec = {"name": name, "git_url": f"{git}/{name}.git-src", "python_file": "definitions.py"}
                    started = time.perf_counter()
                    config.commit({f"repos/{name}/config.yml": yaml.safe_dump(spec, sort_keys=False)}, f"add {name}")
                    for url in urls:
                        wait_for_location(url, name, assets=[f"{name}_asset"], timeout=TIMEOUT_S)
                    figures[f"{label}: commit -> LOADED on both"] = time.perf_counter() - started
                spec = {"name": "alpha", "git_url": f"{git}/alpha.git-src", "python_file": "definitions.py",
                        "environment": [{"name": "BENCH", "value": "1"}]}
                started = time.perf_counter()
                config.commit({"repos/alpha/config.yml": yaml.safe_dump(spec, sort_keys=False)}, "alpha: env")
                while not any("BENCH=1" in c.attrs["Config"]["Env"]
                              for c in client.containers.list(filters={"label": "meta-deployer.repo=alpha"})):
                    if time.perf_counter() - started > TIMEOUT_S:
                        raise SystemExit("alpha was not updated")
                    time.sleep(0.5)
                for url in urls:
                    wait_for_location(url, "alpha", assets=["alpha_asset"], timeout=TIMEOUT_S)
                figures["config change: commit -> serving"] = time.perf_counter() - started
            finally:
                run_make(project, "platform-local-down", env={**env, "PURGE": "1"}, check=False)
                for container in client.containers.list(all=True, filters={"label": "meta-deployer.repo"}):
                    if container.name.endswith(("-alpha", "-beta")) or container.name in ("dagster-repo-alpha", "dagster-repo-beta"):
                        container.remove(force=True)
    print(f"platform-local (sensor interval {SENSOR_INTERVAL_S}s):")
    for label, seconds in figures.items():
        print(f"  {label:<40} {seconds:6.1f} s")


if __name__ == "__main__":
    main()
