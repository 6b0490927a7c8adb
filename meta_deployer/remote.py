"""Run a meta_deployer job on a remote Dagster instance and follow it (``META_DEPLOYER_DAGSTER_URL``).

``make add-repo`` and friends normally run their job locally (``dagster job execute``). With
``META_DEPLOYER_DAGSTER_URL`` set they send it to that webserver instead: ``launchRun`` of the
``meta_deployer`` location's job with the validated run config and the repo tag, then poll
``logsForRun`` (from a cursor) and ``runOrError`` until the run ends, printing each new event.
The pure parts (:func:`format_event`, :func:`exit_code`, :func:`failure_message`) are unit tested.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from meta_deployer import naming
from meta_deployer.errors import MetaDeployerError
from meta_deployer.gitops import redact
from meta_deployer.webserver import graphql

LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

LOGS_FOR_RUN = """
query LogsForRun($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message level stepKey eventType }
        ... on ErrorEvent { error { message } }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

#: Run statuses after which nothing more happens.
DONE = ("SUCCESS", "FAILURE", "CANCELED")
#: Default bound on following one run (a deploy builds a venv or an image: minutes, not hours).
DEFAULT_TIMEOUT_S = 3600.0


class RemoteRunError(MetaDeployerError):
    """The remote instance refused the run, or could not be followed."""


def exit_code(status: str) -> int:
    """0 for a run that succeeded, 1 for any other end (FAILURE, CANCELED) or a run still going."""
    return 0 if status == "SUCCESS" else 1


def format_event(event: Mapping[str, Any]) -> str | None:
    """One line per event: ``<step key or "run">  <event type or log level>  <message>`` (redacted).

    Returns None for an event with nothing to show.
    """
    message = (event.get("message") or "").strip()
    error = ((event.get("error") or {}).get("message") or "").strip()
    if error and error not in message:
        message = f"{message}\n{error}" if message else error
    if not message:
        return None
    kind = event.get("eventType") or event.get("level") or event.get("__typename") or "EVENT"
    step = event.get("stepKey") or "run"
    return redact(f"{step:<12} {kind:<18} {message}")


def failure_message(events: list[Mapping[str, Any]]) -> str:
    """What made a run fail: the error of its failed steps (or of the run), else the last error-level message."""
    errors = [
        ((e.get("error") or {}).get("message") or e.get("message") or "").strip()
        for e in events
        if e.get("eventType") in ("STEP_FAILURE", "RUN_FAILURE") or (e.get("error") or {}).get("message")
    ]
    errors = [e for e in errors if e]
    if not errors:
        errors = [(e.get("message") or "").strip() for e in events if e.get("level") in ("ERROR", "CRITICAL")]
    return redact("\n".join(dict.fromkeys(errors))) or "(no failure event recorded)"


def launch(url: str, job: str, run_config: Mapping[str, Any], tags: Mapping[str, str], timeout: float = 60.0) -> str:
    """Launch ``job`` of the meta_deployer location on the instance at ``url``; return the run id."""
    params = {
        "selector": {
            "repositoryLocationName": naming.SELF_LOCATION,
            "repositoryName": "__repository__",
            "jobName": job,
        },
        "runConfigData": dict(run_config),
        "mode": "default",
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    result = graphql(url, LAUNCH_RUN, {"params": params}, timeout=timeout)["launchRun"]
    kind = result["__typename"]
    if kind == "LaunchRunSuccess":
        return result["run"]["runId"]
    detail = result.get("message") or "; ".join(e["message"] for e in result.get("errors", [])) or str(result)
    raise RemoteRunError(f"{url} refused the {job} run ({kind}): {redact(detail)}")


def follow(
    url: str,
    run_id: str,
    out: TextIO = sys.stdout,
    timeout: float = DEFAULT_TIMEOUT_S,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, list[dict]]:
    """Print the run's events as they come until it ends; return its final status and every event."""
    deadline = clock() + timeout
    cursor: str | None = None
    seen: list[dict] = []
    while True:
        status = _status(url, run_id)
        while True:  # drain every event recorded so far (the status was read first: none is missed)
            data = graphql(url, LOGS_FOR_RUN, {"runId": run_id, "cursor": cursor})["logsForRun"]
            if data["__typename"] != "EventConnection":
                raise RemoteRunError(f"cannot read the events of run {run_id}: {data.get('message', data['__typename'])}")
            for event in data["events"]:
                seen.append(event)
                line = format_event(event)
                if line:
                    print(line, file=out, flush=True)
            cursor = data["cursor"]
            if not data["hasMore"]:
                break
        if status in DONE:
            return status, seen
        if clock() > deadline:
            raise RemoteRunError(f"run {run_id} is still {status} after {timeout:g}s; see it at {url}/runs/{run_id}")
        sleep(poll_s)


def _status(url: str, run_id: str) -> str:
    data = graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"]
    if data["__typename"] != "Run":
        raise RemoteRunError(f"run {run_id} not found at {url}: {data.get('message', data['__typename'])}")
    return data["status"]


def submit(url: str, job: str, run_config: Mapping[str, Any], tags: Mapping[str, str],
           out: TextIO = sys.stdout, err: TextIO = sys.stderr, timeout: float = DEFAULT_TIMEOUT_S) -> int:
    """Launch and follow one run; the process exit code (0 on SUCCESS, 1 otherwise)."""
    run_id = launch(url, job, run_config, tags)
    print(f"launched {job} run {run_id} on {url} (see {url}/runs/{run_id})", file=out, flush=True)
    status, events = follow(url, run_id, out=out, timeout=timeout)
    code = exit_code(status)
    if code:
        print(f"error: run {run_id} ended {status}: {failure_message(events)}", file=err, flush=True)
    else:
        print(f"run {run_id} ended {status}", file=out, flush=True)
    return code
