"""Benchmark: RepoIOManager against plain dagster-aws S3PickleIOManager, side by side.

Both managers write and then read the same objects (same asset keys, same
payload) to the same bucket of one moto server on 127.0.0.1, alternating
object by object, so drift of a shared machine affects both alike. The figure is the
ratio of the medians of per-round totals (RepoIOManager / plain): the cost of
computing and checking every key, on top of the same dagster-aws S3 calls.

    .venv/bin/python bench/bench_io.py [--objects 100] [--rounds 7] [--size 10000]

No real AWS is reached: fake credentials, and AWS_ENDPOINT_URL points at the
moto server this script starts (and stops).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import MotoServer  # noqa: E402

DEFAULT_OBJECTS = 100
DEFAULT_ROUNDS = 7
DEFAULT_SIZE = 10_000
BUCKET = "dagster-storage"
REPO = "alpha"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Passes over all contexts when timing the path computation alone.
PATH_REPEAT = 20


def start_moto() -> tuple[subprocess.Popen, str]:
    """A moto server on a free loopback port, in its own process (the tests' own fixture class)."""
    server = MotoServer(None)
    return server.proc, server.url


def _managers() -> dict[str, object]:
    """The two IO managers under test, initialised as Dagster would."""
    from dagster import build_init_resource_context
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    from meta_deployer_runtime.io import RepoIOManager

    plain = S3PickleIOManager(s3_resource=S3Resource(), s3_bucket=BUCKET, s3_prefix=f"repos/{REPO}/assets")
    repo = RepoIOManager(repo_name=REPO, bucket=BUCKET, base_prefix=f"repos/{REPO}")
    return {
        "plain S3PickleIOManager": plain.inner_io_manager(),
        "RepoIOManager": repo.create_io_manager(build_init_resource_context()),
    }


def _contexts(objects: int, instance) -> tuple[list, list]:
    """One output and one input context per asset, shared by both managers and all rounds.

    Building a context costs more than the I/O it describes, so it stays off the clock.
    """
    from dagster import AssetKey, build_input_context, build_output_context

    keys = [AssetKey(["bench", "daily", f"table_{i}"]) for i in range(objects)]
    outputs = [build_output_context(asset_key=key, instance=instance) for key in keys]
    inputs = [build_input_context(asset_key=key, upstream_output=out, instance=instance) for key, out in zip(keys, outputs)]
    return outputs, inputs


def _round(managers: dict[str, object], outputs: list, inputs: list, payload: bytes, flip: bool) -> dict[str, list[float]]:
    """Write then read every asset with every manager, alternating per object.

    Alternating object by object (and flipping the order every round) spreads the load
    of a shared machine evenly over both managers. Returns {name: [write s, read s]}.
    """
    totals = {name: [0.0, 0.0] for name in managers}
    items = list(managers.items())
    for i, (out, inp) in enumerate(zip(outputs, inputs)):
        for name, manager in items[::-1] if (i % 2) ^ flip else items:
            # Bench only: forget the metadata the previous write added, so the context can be reused.
            out._user_generated_metadata = {}  # noqa: SLF001
            start = time.perf_counter()
            manager.handle_output(out, payload)
            middle = time.perf_counter()
            if manager.load_input(inp) != payload:
                raise AssertionError("read back a different object")
            end = time.perf_counter()
            totals[name][0] += middle - start
            totals[name][1] += end - middle
    return totals


def _path_cost_us(manager, contexts: list, repeat: int) -> float:
    """Microseconds per path computation (the only step where the two managers differ; no I/O)."""
    start = time.perf_counter()
    for _ in range(repeat):
        for context in contexts:
            manager._get_path(context)  # noqa: SLF001 - UPathIOManager's path step, timed alone
    return (time.perf_counter() - start) / (repeat * len(contexts)) * 1e6


def run(objects: int, rounds: int, size: int) -> dict[str, object]:
    """Run the benchmark and return its figures."""
    import boto3

    from dagster import DagsterInstance

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    instance = DagsterInstance.ephemeral()
    managers = _managers()
    payload = os.urandom(size)
    timings: dict[str, dict[str, list[float]]] = {name: {"write": [], "read": []} for name in managers}
    outputs, inputs = _contexts(objects, instance)
    _round(managers, outputs, inputs, payload, flip=False)  # warm-up: connections, caches
    for i in range(rounds):
        for name, (wrote, read) in _round(managers, outputs, inputs, payload, flip=bool(i % 2)).items():
            timings[name]["write"].append(wrote)
            timings[name]["read"].append(read)
    median: Callable[[list[float]], float] = statistics.median
    plain, repo = (timings[n] for n in managers)
    return {
        "objects": objects,
        "rounds": rounds,
        "payload_bytes": size,
        "median_seconds": {n: {op: round(median(t[op]), 4) for op in t} for n, t in timings.items()},
        "ratio_write": round(median(repo["write"]) / median(plain["write"]), 3),
        "ratio_read": round(median(repo["read"]) / median(plain["read"]), 3),
        "ratio_total": round(
            median([w + r for w, r in zip(repo["write"], repo["read"])])
            / median([w + r for w, r in zip(plain["write"], plain["read"])]),
            3,
        ),
        "ratio_write_best": round(min(repo["write"]) / min(plain["write"]), 3),
        "ratio_read_best": round(min(repo["read"]) / min(plain["read"]), 3),
        "path_us": {n: round(_path_cost_us(m, outputs, PATH_REPEAT), 1) for n, m in managers.items()},
    }


def main() -> None:
    """Parse arguments, start moto, run, print a table, save JSON under bench/results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=DEFAULT_OBJECTS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="payload bytes per object")
    args = parser.parse_args()

    proc, url = start_moto()
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
    )
    try:
        figures = run(args.objects, args.rounds, args.size)
    finally:
        proc.terminate()
        proc.wait(10)

    print(f"{args.objects} objects x {args.size} bytes, {args.rounds} rounds, moto S3 on loopback")
    print(f"{'manager':<26}{'write s':>10}{'read s':>10}")
    for name, t in figures["median_seconds"].items():  # type: ignore[union-attr]
        print(f"{name:<26}{t['write']:>10.4f}{t['read']:>10.4f}")
    print(
        f"ratio RepoIOManager/plain (medians): write {figures['ratio_write']}, read {figures['ratio_read']}, "
        f"total {figures['ratio_total']}; (best rounds): write {figures['ratio_write_best']}, "
        f"read {figures['ratio_read_best']}"
    )
    per_object_ms = figures["median_seconds"]["plain S3PickleIOManager"]["write"] / args.objects * 1e3  # type: ignore[index]
    print(f"path computation, us per object: {figures['path_us']} (one S3 write takes ~{per_object_ms:.1f} ms here)")
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "bench_io.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
