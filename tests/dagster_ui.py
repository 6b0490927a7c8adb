"""Talk to a real Dagster webserver over GraphQL (test helpers)."""

from __future__ import annotations

import time

from meta_deployer.remote import LAUNCH_RUN as LAUNCH  # the product's own launchRun document
from meta_deployer.webserver import graphql, location_statuses

RUN_STATUS = """
query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }
"""


def wait_for_location(url: str, name: str, *, present: bool = True, assets: list[str] | None = None, timeout: float = 120) -> dict:
    """Poll until ``name`` is LOADED (with ``assets``) or gone; return the statuses."""
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = location_statuses(url)
        except Exception as exc:  # webserver still starting
            last = {"error": str(exc)}
        else:
            entry = last.get(name)
            if not present and entry is None:
                return last
            if present and entry and entry["status"] == "LOADED" and (assets is None or set(assets) <= set(entry["assets"])):
                return last
        time.sleep(1)
    raise AssertionError(f"location {name} never became {'LOADED' if present else 'absent'}: {last}")


def materialize_when_daemon_ready(url: str, location: str, asset: list[str], timeout: float = 150) -> str:
    """Like :func:`materialize`, relaunching while the daemon has not yet re-read workspace.yaml.

    The daemon refreshes its workspace every 60 s (dagster's RELOAD_WORKSPACE_INTERVAL), and
    queued runs of a location it does not know yet fail to dequeue; README documents this.
    """
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        status = materialize(url, location, asset)
        if status == "SUCCESS":
            return status
        time.sleep(5)
    return status


def materialize(url: str, location: str, asset: list[str], timeout: float = 180) -> str:
    """Launch a materialization of one asset over GraphQL; wait for the run; return its status."""
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": asset}],
        },
        "mode": "default",
    }
    result = graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["runId"]
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        status = graphql(url, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} still {status} after {timeout}s")
