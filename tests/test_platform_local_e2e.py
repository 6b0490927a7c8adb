"""The local rehearsal of the production topology (`make platform-local`), with real parts only:
two webserver replicas, a daemon with dagster-docker's DockerRunLauncher, the deployer's own code
server, Postgres, a shared workspace volume, an S3 endpoint, and a configuration repository
served by `git daemon`. One thorough test: everything a user does on the platform, in order."""

from __future__ import annotations

import json
import time

import boto3
import pytest
import yaml

from conftest import free_port
from dagster_ui import materialize_when_daemon_ready, wait_for_location
from devkit import definitions_py, run_make
from platformkit import fresh_database, git_daemon
from dockerkit import engine_env
from meta_deployer.platforms.images import docker_client
from meta_deployer.webserver import location_statuses

pytestmark = pytest.mark.e2e

SALES = definitions_py("orders", "refunds")


def wait_until(check, what: str, timeout: float = 600) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(2)
    raise AssertionError(f"{what} within {timeout}s")


def both(urls: list[str], name: str, **kwargs) -> None:
    for url in urls:
        wait_for_location(url, name, **kwargs)


def test_the_platform_deploys_from_git_serves_on_every_replica_and_runs_in_the_repos_image(
    project, git_remote, tmp_path
):
    registry = engine_env()["META_DEPLOYER_REGISTRY"]
    client = docker_client()
    code = git_remote("sales", files={"definitions.py": SALES})
    config = git_remote("config", files={"repos/.gitkeep": ""})
    port = free_port()
    while port + 1 > 65535 or not _free(port + 1):
        port = free_port()
    urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
    with git_daemon(code.path.parent) as git, fresh_database() as database:
        env = {
            "META_DEPLOYER_CONFIG_GIT_URL": f"{git}/{config.path.name}",
            "DAGSTER_POSTGRES_URL": database,
            "DAGSTER_PORT": str(port),
            "META_DEPLOYER_DOCKER_PORT_BASE": "26000",
            "META_DEPLOYER_REGISTRY": registry,
        }
        try:
            up = run_make(project, "platform-local", env=env, timeout=1200)
            assert "platform-local is up" in up.stdout
            roles = {c.name: c.labels.get("meta-deployer.role") for c in client.containers.list(
                filters={"label": "meta-deployer.platform=local"})}
            assert roles == {"md-webserver-1": "webserver", "md-webserver-2": "webserver", "md-daemon": "daemon",
                             "md-deployer": "deployer", "md-s3": "s3"}
            for name in roles:  # no host path and no Docker socket anywhere in the topology
                mounts = client.api.inspect_container(name)["Mounts"]
                assert all(m["Type"] == "volume" for m in mounts), (name, mounts)
            # Idempotent: a second `make platform-local` restarts nothing.
            started = {c.name: c.attrs["State"]["StartedAt"] for c in client.containers.list(
                filters={"label": "meta-deployer.platform=local"})}
            assert "started" not in run_make(project, "platform-local", env=env, timeout=600).stdout
            assert started == {c.name: c.attrs["State"]["StartedAt"] for c in client.containers.list(
                filters={"label": "meta-deployer.platform=local"})}

            # 1. A config pushed to the configuration repository deploys, with no `make`.
            spec = {"name": "sales", "git_url": f"{git}/{code.path.name}", "python_file": "definitions.py"}
            config.commit({"repos/sales/config.yml": yaml.safe_dump(spec, sort_keys=False)}, "add sales")
            both(urls, "sales", assets=["orders", "refunds"], timeout=900)

            # 2. A run of its asset executes in the repo's own image and writes under repos/sales/.
            assert materialize_when_daemon_ready(urls[1], "sales", ["orders"], timeout=300) == "SUCCESS"
            runs = client.containers.list(all=True, filters={"label": "dagster/job_name=__ASSET_JOB"})
            assert runs and all(c.image.tags and "dagster/sales" in c.image.tags[0] for c in runs), runs
            s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:4570", region_name="us-east-1",
                              aws_access_key_id="rehearsal", aws_secret_access_key="rehearsal")
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="dagster-storage").get("Contents", [])]
            assert "repos/sales/assets/orders" in keys and "system/deployments/sales.json" in keys, keys
            assert not [k for k in keys if k.startswith("repos/") and not k.startswith("repos/sales/")], keys

            # 3. Two deploys of one repo at once, in two containers, bypassing the run queue (as
            # `dagster job execute` does): one waits for the other's lease in the bucket, and the record
            # and workspace end consistent.
            head = code.commit({"definitions.py": definitions_py("orders", "refunds", "returns")}, "returns")
            outputs = deploy_twice_at_once(client, "sales")
            assert sum("holds its lease" in out for out in outputs) >= 1, outputs
            record = json.loads(s3.get_object(Bucket="dagster-storage", Key="system/deployments/sales.json")["Body"].read())
            assert record["commit"] == head
            both(urls, "sales", assets=["orders", "refunds", "returns"])

            # 4. `make add-repo` against the central instance deploys through it and streams its run.
            stock = git_remote("inventory", files={"definitions.py": definitions_py("stock")})
            remote = {**env, "META_DEPLOYER_DAGSTER_URL": urls[0], "REPO_NAME": "inventory"}
            added = run_make(project, "add-repo", env={**remote, "REPO_URL": f"{git}/{stock.path.name}"}, timeout=900)
            assert "launched add_repo run" in added.stdout and "ended SUCCESS" in added.stdout, added.stdout
            assert "STEP_SUCCESS" in added.stdout or "checkout" in added.stdout, added.stdout
            both(urls, "inventory", assets=["stock"])
            removed = run_make(project, "remove-repo", env=remote, timeout=600)
            assert "ended SUCCESS" in removed.stdout, removed.stdout
            both(urls, "inventory", present=False)

            # 5. A changed config updates it (a new environment value reaches the served container).
            spec["environment"] = [{"name": "REGION", "value": "emea"}]
            config.commit({"repos/sales/config.yml": yaml.safe_dump(spec, sort_keys=False)}, "sales: region")

            def updated() -> bool:
                servers = client.containers.list(filters={"label": "meta-deployer.repo=sales"})
                return any("REGION=emea" in c.attrs["Config"]["Env"] for c in servers)

            wait_until(updated, "sales redeployed with REGION=emea")
            both(urls, "sales", assets=["orders", "refunds"])

            # 6. A deleted config removes it from both replicas.
            config.commit({"repos/sales/config.yml": None}, "remove sales")
            both(urls, "sales", present=False, timeout=600)
            assert all("sales" not in location_statuses(url) for url in urls)
        except BaseException:
            for name in ("md-deployer", "md-daemon", "md-webserver-1"):
                try:
                    print(f"--- {name}\n" + client.containers.get(name).logs(tail=60).decode(errors="replace"))
                except Exception:  # noqa: BLE001 - diagnostics only
                    pass
            raise
        finally:
            run_make(project, "platform-local-down", env={**env, "PURGE": "1"}, check=False)
            for container in client.containers.list(all=True, filters={"label": "meta-deployer.repo"}):
                if "sales" in container.name or "inventory" in container.name:
                    container.remove(force=True)


def deploy_twice_at_once(client, name: str) -> list[str]:
    """Start two `update_repo` runs of ``name`` with `dagster job execute` in two containers of the
    platform image at the same moment (the deployer's settings, the workspace volume); both must
    succeed; returns their outputs."""
    deployer = client.containers.get("md-deployer")
    env = dict(e.split("=", 1) for e in deployer.attrs["Config"]["Env"])
    env.pop("DAGSTER_CONTAINER_CONTEXT", None)
    # No DAGSTER_HOME (as in the deployer's own container): `dagster job execute` runs on an ephemeral
    # instance, and the docker platform binds no instance folder into the location.
    script = (f"meta-deployer run-config update --name {name} > /tmp/run.yaml && "
              "dagster job execute -m meta_deployer.definitions -j update_repo -c /tmp/run.yaml")
    workers = [
        client.containers.run(deployer.image.id, ["sh", "-c", script], detach=True, network_mode="host",
                              environment=env, volumes={"md-workspace": {"bind": "/workspace", "mode": "rw"}},
                              labels={"meta-deployer.test": "twice"})
        for _ in range(2)
    ]
    outputs = []
    try:
        for worker in workers:
            code = worker.wait(timeout=900)["StatusCode"]
            out = worker.logs().decode(errors="replace")
            outputs.append(out)
            assert code == 0, out[-4000:]
    finally:
        for worker in workers:
            worker.remove(force=True)
    return outputs


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
