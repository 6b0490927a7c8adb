"""Docker platform speed, measured side by side on one repo in one run (no timing asserts).

Reports, for the same small repo (dagster only):

- a cold deploy: clone, build with nothing cached for its dependencies, validate, push, start;
- a no-op update: nothing changed, so no build, no push, no container change;
- a code-only change: the dependency layer is reused, only the code layer is rebuilt;
- a naive pipeline of the same steps: `git clone`, `docker build --no-cache`, `docker push`;

and the ratios between them. The deploys run the pipeline's own steps (``Deployer.deploy``,
what the ops call) without `dagster job execute` around them; one no-op `make update-repo`
is measured too, to show what the Dagster run itself adds.

Needs the engine and registry of `.ci/services.sh`. Run:
    source .ci/services.sh && .venv/bin/python bench/bench_docker.py
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

from dockerkit import DEFINITIONS, cleanup  # noqa: E402
from gitrepo import GitRemote  # noqa: E402

NAIVE_DOCKERFILE = (
    "FROM python:3.12-slim\n"
    "WORKDIR /app\n"
    "COPY . /app\n"
    "RUN pip install --no-cache-dir --progress-bar off -r requirements.txt\n"
    'CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "4000", "-f", "definitions.py"]\n'
)


def quiet(line: str) -> None:
    pass


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    registry = os.environ.get("META_DEPLOYER_TEST_REGISTRY") or os.environ.get("META_DEPLOYER_REGISTRY")
    if not os.environ.get("DOCKER_HOST") or not registry:
        sys.exit("bench_docker needs DOCKER_HOST and META_DEPLOYER_TEST_REGISTRY: source .ci/services.sh first")
    name = f"bench{uuid.uuid4().hex[:6]}"
    # A dependency list no build has seen before, so the cold deploy really installs it
    # (the marker is always true; it only makes the layer new).
    requirements = f'dagster==1.13.27 ; platform_release != "bench-{name}"\n'
    with tempfile.TemporaryDirectory(prefix="bench-docker-") as tmp:
        tmp_path = Path(tmp)
        env = {
            "META_DEPLOYER_ROOT": str(tmp_path / "project"),
            "META_DEPLOYER_REPOS_DIR": str(tmp_path / "project" / "repos"),
            "META_DEPLOYER_WORKSPACE": str(tmp_path / "project" / "workspace" / "workspace.yaml"),
            "META_DEPLOYER_WORK_DIR": str(tmp_path / "project" / ".meta_deployer"),
            "META_DEPLOYER_PLATFORM": "docker",
            "META_DEPLOYER_REGISTRY": registry,
            "DAGSTER_HOME": str(tmp_path / "project" / "dagster_home"),
            "DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9",
            "META_DEPLOYER_DOCKER_PORT_BASE": "47000",
            "META_DEPLOYER_DOCKER_PORT_PAIRS": "200",
            "META_DEPLOYER_DOCKER_DRAIN_TIMEOUT": "0",
            "META_DEPLOYER_DOCKER_POLL_INTERVAL": "0.2",
        }
        os.environ.update(env)
        (tmp_path / "project" / "repos").mkdir(parents=True)
        (tmp_path / "project" / "dagster_home").mkdir()
        from meta_deployer.pipeline import Deployer
        from meta_deployer.spec import parse_spec

        files = {"definitions.py": DEFINITIONS.format(asset="a", value=1), "requirements.txt": requirements}
        remote = GitRemote.create(tmp_path / "remote", files)
        spec = parse_spec({"name": name, "git_url": remote.url, "python_file": "definitions.py"}, "bench")
        deployer = Deployer()
        try:
            cold = timed(lambda: deployer.deploy(spec, quiet))
            noop = min(timed(lambda: deployer.deploy(spec, quiet)) for _ in range(3))
            remote.commit({"definitions.py": DEFINITIONS.format(asset="a", value=2)})
            code_only = timed(lambda: deployer.deploy(spec, quiet))
            make_env = {**os.environ, "REPO_NAME": name}
            make_noop = timed(lambda: subprocess.run(
                ["make", "--no-print-directory", "-C", str(ROOT), "update-repo", f"REPO_NAME={name}"],
                env=make_env, check=True, capture_output=True,
            ))

            remote.commit({"definitions.py": DEFINITIONS.format(asset="a", value=3)})
            naive_dir = tmp_path / "naive"
            ref = f"{registry}/naive/{name}:{remote.head()[:12]}"

            def naive() -> None:
                subprocess.run(["git", "clone", "-q", remote.url, str(naive_dir)], check=True)
                (naive_dir / "Dockerfile").write_text(NAIVE_DOCKERFILE)
                subprocess.run(["docker", "build", "-q", "--no-cache", "--network", "host", "-t", ref, str(naive_dir)],
                               check=True, capture_output=True)
                subprocess.run(["docker", "push", "-q", ref], check=True, capture_output=True)

            naive_s = timed(naive)
        finally:
            try:
                deployer.remove(name, purge=True, log=quiet)
            finally:
                cleanup([name])
                subprocess.run(["docker", "rmi", "-f", f"{registry}/naive/{name}:{remote.head()[:12]}"], capture_output=True)

    rows = [
        ("cold deploy (clone, cold build, validate, push, start)", cold),
        ("no-op update (no build, no push, no container change)", noop),
        ("code-only change (dependency layer cached)", code_only),
        ("naive: git clone + docker build --no-cache + docker push", naive_s),
        ("no-op `make update-repo` (adds the Dagster run)", make_noop),
    ]
    print("docker platform, one repo (dagster only), side by side:")
    for label, seconds in rows:
        print(f"  {label:<58} {seconds:7.2f} s")
    print("ratios:")
    print(f"  no-op update / cold deploy          {noop / cold:6.3f}  ({cold / noop:.0f}x faster)")
    print(f"  code-only change / cold deploy      {code_only / cold:6.3f}")
    print(f"  code-only change / naive pipeline   {code_only / naive_s:6.3f}  ({naive_s / code_only:.1f}x faster)")
    print(f"  no-op update / naive pipeline       {noop / naive_s:6.3f}")
    print(f"  cold deploy / naive pipeline        {cold / naive_s:6.3f}  (cold also validates and starts the server)")


if __name__ == "__main__":
    main()
