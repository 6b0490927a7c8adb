"""Bench: AWS calls and time of ECS deploys, side by side, against a local moto server.

Measures, on one repo and a fresh ``EcsPlatform`` (new gateway, as in a new
run) for each step:

- a first deploy (every resource created),
- a no-op update (same commit, spec and settings: reads only),
- an env-only change (a new task definition revision, no build),
- a code change (a new image digest),
- a remove.

A deploy that moves the service to a new revision (the first deploy, the env-only and the code
change) first runs the validation task: RunTask, DescribeTasks until moto reports it STOPPED (a
few polls) and GetLogEvents; the no-op runs none.

Each step is repeated ``--repeat`` times on fresh repos and the median is
reported. ECS in moto reaches RUNNING at once (``MOTO_ECS_SERVICE_RUNNING=1``),
so the times are the deployer's own overhead plus the HTTP round trips, not
Fargate's start-up time. A second table adds a simulated 50 ms round trip to
every request (a botocore ``before-send`` hook), closer to a real region:
there the no-op's reads run concurrently while a first deploy's writes run in
order. Run: ``.venv/bin/python bench/bench_ecs.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import MotoServer  # noqa: E402
from meta_deployer.platforms.aws.bootstrap import bootstrap  # noqa: E402
from meta_deployer.platforms.base import Checkout, Published  # noqa: E402
from meta_deployer.platforms.ecs import EcsPlatform  # noqa: E402
from meta_deployer.settings import Settings  # noqa: E402
from meta_deployer.spec import parse_spec  # noqa: E402

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def start_moto() -> tuple[subprocess.Popen, str]:
    """A moto server on a free loopback port, in its own process (the tests' own fixture class)."""
    server = MotoServer({"MOTO_ECS_SERVICE_RUNNING": "1"})
    return server.proc, server.url


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


def add_latency(platform: EcsPlatform, latency_s: float) -> None:
    """Delay every request by ``latency_s`` (a stand-in for the round trip to a real region)."""
    if latency_s <= 0:
        return
    gw = platform.gateway
    for client in (gw.ecs, gw.ecr, gw.iam, gw.logs, gw.servicediscovery, gw.elbv2, gw.sts, gw.s3, gw.secretsmanager):
        client.meta.events.register("before-send", lambda **_: time.sleep(latency_s))


def measure(settings: Settings, step, latency_s: float = 0.0) -> tuple[float, int, int]:
    platform = EcsPlatform(settings)
    platform.gateway  # noqa: B018 - build the boto3 clients outside the timing (reported apart)
    add_latency(platform, latency_s)
    started = time.perf_counter()
    step(platform)
    elapsed = time.perf_counter() - started
    calls = platform.gateway.calls
    return elapsed, len(calls), sum(1 for c in calls if c.mutating)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--latency-ms", type=float, action="append",
        help="simulated round trip per AWS request (repeatable; default: 0 and 50)",
    )
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
            gateway_times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                EcsPlatform(settings).gateway  # noqa: B018
                gateway_times.append(time.perf_counter() - started)
            print(f"ECS platform against moto (median of {args.repeat}; fresh EcsPlatform and gateway per step)")
            print(f"creating the gateway's boto3 clients (not in the times below): {statistics.median(gateway_times):.3f}s")
            for latency_ms in args.latency_ms or [0.0, 50.0]:
                results: dict[str, list[tuple[float, int, int]]] = {k: [] for k in steps}
                for i in range(args.repeat):
                    name = f"bench-{int(latency_ms)}-{i}"
                    for label, step in steps.items():
                        results[label].append(
                            measure(settings, lambda p, step=step: step(p, name), latency_ms / 1000)
                        )
                report(results, latency_ms)
    finally:
        proc.terminate()
        proc.wait(10)


def report(results: dict[str, list[tuple[float, int, int]]], latency_ms: float) -> None:
    first = statistics.median(r[0] for r in results["first deploy"])
    print(f"\nsimulated round trip per request: {latency_ms:g} ms")
    print(f"{'step':<18}{'time (s)':>10}{'AWS calls':>11}{'mutating':>10}{'time vs first':>15}")
    for label, rows in results.items():
        t = statistics.median(r[0] for r in rows)
        calls = statistics.median(r[1] for r in rows)
        mutating = statistics.median(r[2] for r in rows)
        print(f"{label:<18}{t:>10.3f}{calls:>11.0f}{mutating:>10.0f}{t / first:>14.2f}x")


if __name__ == "__main__":
    main()
