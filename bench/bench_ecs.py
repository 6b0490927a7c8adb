"""Bench: AWS calls and time of ECS deploys, side by side, against a local moto server.

Measures, on one repo and a fresh ``EcsPlatform`` (new gateway, as in a new
run) for each step:

- a first deploy (every resource created),
- a no-op update (same commit, spec and settings: reads only),
- an env-only change (a new task definition revision, no build),
- a code change (a new image digest),
- a remove.

Each step is repeated ``--repeat`` times on fresh repos and the median is
reported. ECS in moto reaches RUNNING at once (``MOTO_ECS_SERVICE_RUNNING=1``),
so the times are the deployer's own overhead plus the HTTP round trips, not
Fargate's start-up time. Run: ``.venv/bin/python bench/bench_ecs.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meta_deployer.bootstrap import bootstrap  # noqa: E402
from meta_deployer.platforms.base import Checkout, Published  # noqa: E402
from meta_deployer.platforms.ecs import EcsPlatform  # noqa: E402
from meta_deployer.settings import Settings  # noqa: E402
from meta_deployer.spec import parse_spec  # noqa: E402

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MOTO_ECS_SERVICE_RUNNING": "1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("moto server did not start")


def network() -> dict[str, str]:
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.50.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="bench", Description="bench", VpcId=vpc)["GroupId"]
    return {
        "META_DEPLOYER_VPC_ID": vpc, "META_DEPLOYER_SUBNETS": subnet, "META_DEPLOYER_SECURITY_GROUPS": sg,
        "META_DEPLOYER_PLATFORM": "ecs", "META_DEPLOYER_ECS_POLL_INTERVAL": "0.01",
    }


def inputs(name: str, seed: str, env_value: str = "1"):
    spec = parse_spec(
        {"name": name, "git_url": "https://example.com/x.git", "python_file": "definitions.py",
         "environment": [{"name": "FOO", "value": env_value}]},
        "bench",
    )
    digest = "sha256:" + hashlib.sha256(f"{name}{seed}".encode()).hexdigest()
    published = Published(ref=f"{REGISTRY}/dagster/{name}:{seed}", digest=digest)
    checkout = Checkout(name, Path("/nonexistent"), hashlib.sha1(seed.encode()).hexdigest(), "main", "https://example.com/x.git", True)
    return spec, published, checkout


def measure(settings: Settings, step) -> tuple[float, int, int]:
    platform = EcsPlatform(settings)
    platform.gateway  # noqa: B018 - build the boto3 clients outside the timing (reported apart)
    started = time.perf_counter()
    step(platform)
    elapsed = time.perf_counter() - started
    calls = platform.gateway.calls
    return elapsed, len(calls), sum(1 for c in calls if c.mutating)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    proc, url = start_moto()
    os.environ.update(
        AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
        AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings.from_env({"META_DEPLOYER_ROOT": tmp, **network()})
            bootstrap(settings, log=lambda _: None)
            quiet = lambda _: None  # noqa: E731
            steps = {
                "first deploy": lambda p, n: p.serve(*inputs(n, "v1"), quiet),
                "no-op update": lambda p, n: p.serve(*inputs(n, "v1"), quiet),
                "env-only change": lambda p, n: p.serve(*inputs(n, "v1", env_value="2"), quiet),
                "code change": lambda p, n: p.serve(*inputs(n, "v2", env_value="2"), quiet),
                "remove": lambda p, n: p.stop(n, False, quiet),
            }
            results: dict[str, list[tuple[float, int, int]]] = {k: [] for k in steps}
            gateway_times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                EcsPlatform(settings).gateway  # noqa: B018
                gateway_times.append(time.perf_counter() - started)
            for i in range(args.repeat):
                name = f"bench-{i}"
                for label, step in steps.items():
                    results[label].append(measure(settings, lambda p, step=step: step(p, name)))
    finally:
        proc.terminate()
        proc.wait(10)

    first = statistics.median(r[0] for r in results["first deploy"])
    print(f"ECS platform against moto (median of {args.repeat}; fresh EcsPlatform and gateway per step)")
    print(f"creating the gateway's boto3 clients (not in the times below): {statistics.median(gateway_times):.3f}s")
    print(f"{'step':<18}{'time (s)':>10}{'AWS calls':>11}{'mutating':>10}{'time vs first':>15}")
    for label, rows in results.items():
        t = statistics.median(r[0] for r in rows)
        calls = statistics.median(r[1] for r in rows)
        mutating = statistics.median(r[2] for r in rows)
        print(f"{label:<18}{t:>10.3f}{calls:>11.0f}{mutating:>10.0f}{t / first:>14.2f}x")


if __name__ == "__main__":
    main()
