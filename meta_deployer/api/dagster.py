"""The API's only way to the Dagster instance: the webserver's GraphQL API (``DAGSTER_WEBSERVER_URL``).

Launching reuses ``meta_deployer.remote.launch`` (what ``make add-repo`` does with
``META_DEPLOYER_DAGSTER_URL``); this module adds the reads the API needs: a run, a repo's runs, a run's
events from a cursor, and the materializations of ``code_locations/<name>`` (the deploy history).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meta_deployer import history, naming, remote
from meta_deployer.webserver import graphql, location_statuses

#: The jobs the API launches and shows as operations (the meta_deployer location's deploy jobs).
OPERATION_JOBS = ("add_repo", "update_repo", "rollback_repo", "remove_repo")
DEPLOY_JOBS = ("add_repo", "update_repo", "rollback_repo")

_RUN_FIELDS = "runId jobName status creationTime startTime endTime tags { key value }"

RUN = f"""
query Run($runId: ID!) {{
  runOrError(runId: $runId) {{ __typename ... on Run {{ {_RUN_FIELDS} }} ... on PythonError {{ message }} }}
}}
"""

RUNS = f"""
query Runs($filter: RunsFilter, $limit: Int) {{
  runsOrError(filter: $filter, limit: $limit) {{
    __typename ... on Runs {{ results {{ {_RUN_FIELDS} }} }} ... on PythonError {{ message }}
  }}
}}
"""

MATERIALIZATIONS = """
query History($key: AssetKeyInput!, $limit: Int) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: $limit) {
        runId timestamp description
        metadataEntries { label ... on TextMetadataEntry { text } }
      }
    }
  }
}
"""


LOGS_FOR_RUN = """
query LogsForRun($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message level stepKey eventType timestamp }
        ... on ErrorEvent { error { message } }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""


class DagsterUnavailable(Exception):
    """The webserver did not answer, or answered with errors."""


def _call(url: str, query: str, variables: dict | None = None, timeout: float = 10.0) -> dict:
    import requests

    try:
        return graphql(url, query, variables, timeout=timeout)
    except (requests.RequestException, RuntimeError, ValueError) as exc:
        raise DagsterUnavailable(f"the Dagster webserver at {url}: {exc.__class__.__name__}") from None


def launch(url: str, job: str, run_config: Mapping[str, Any], repo: str, extra_tags: Mapping[str, str] | None = None) -> str:
    """Launch ``job`` of the meta_deployer location, tagged with its repo; the run id."""
    import requests

    tags = {naming.RUN_TAG_KEY: repo, "meta_deployer/via": "api", **(extra_tags or {})}
    try:
        return remote.launch(url, job, run_config, tags, timeout=10.0)
    except (requests.RequestException, RuntimeError) as exc:
        raise DagsterUnavailable(f"the Dagster webserver at {url}: {exc.__class__.__name__}") from None


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run.get("tags") or []}


def run(url: str, run_id: str) -> dict | None:
    """One run (``runId jobName status creationTime startTime endTime tags``), None when unknown."""
    data = _call(url, RUN, {"runId": run_id})["runOrError"]
    if data["__typename"] != "Run":
        return None
    return {**data, "tags": _tags(data)}


def repo_runs(url: str, repo: str, limit: int = 20, jobs: tuple[str, ...] = OPERATION_JOBS) -> list[dict]:
    """The repo's latest runs of ``jobs``, newest first."""
    variables = {"filter": {"tags": [{"key": naming.RUN_TAG_KEY, "value": repo}]}, "limit": limit}
    data = _call(url, RUNS, variables)["runsOrError"]
    if data["__typename"] != "Runs":
        raise DagsterUnavailable(f"runs of {repo}: {data.get('message', data['__typename'])}")
    return [{**r, "tags": _tags(r)} for r in data["results"] if r["jobName"] in jobs]


def events(url: str, run_id: str, cursor: str | None = None) -> tuple[list[dict], str | None, bool]:
    """The run's events after ``cursor``: (events, new cursor, more to read)."""
    data = _call(url, LOGS_FOR_RUN, {"runId": run_id, "cursor": cursor})["logsForRun"]
    if data["__typename"] != "EventConnection":
        raise DagsterUnavailable(f"events of run {run_id}: {data.get('message', data['__typename'])}")
    return data["events"], data["cursor"], data["hasMore"]


def all_events(url: str, run_id: str) -> list[dict]:
    out: list[dict] = []
    cursor = None
    while True:
        batch, cursor, more = events(url, run_id, cursor)
        out += batch
        if not more:
            return out


def deployments(url: str, repo: str, limit: int = 100) -> list[history.DeploymentEntry]:
    """The repo's successful deployments, newest first (materializations of code_locations/<repo>);
    the history stops at the latest removal, as the rollback job's does."""
    data = _call(url, MATERIALIZATIONS, {"key": {"path": ["code_locations", repo]}, "limit": limit})["assetOrError"]
    if data["__typename"] != "Asset":
        return []
    out = []
    for m in data["assetMaterializations"]:
        metadata = {e["label"]: e.get("text", "") for e in m["metadataEntries"]}
        entry = history.entry(m["runId"], float(m["timestamp"]) / 1000.0, metadata)
        if entry is None:
            if metadata.get("status") == "removed":
                break
            continue
        out.append(entry)
    return out


def statuses(url: str) -> dict[str, dict] | None:
    """``{location: {"status", "assets"}}`` as the webserver sees it; None when it does not answer."""
    try:
        return location_statuses(url, timeout=5.0)
    except Exception:  # noqa: BLE001 - any failure means "no live status"; the records still answer
        return None
