"""The Dagster webserver, over GraphQL: reload the workspace, read location status.

``DagsterGraphQLClient`` has no reload-workspace method, so the mutation is
sent directly. ``reloadWorkspace`` re-reads workspace.yaml, so it picks up
added and removed locations (``reloadRepositoryLocation`` cannot add one).

With several webserver replicas (``META_DEPLOYER_WEBSERVERS``, found by
``meta_deployer.discovery``), :func:`reload_replicas` sends the same reload to each
one on its own address, a few at a time, and reports each one's outcome by name: a
replica that does not answer is a warning naming it, and the others are still reloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from meta_deployer.replicas import MAX_PARALLEL_RELOADS, Replica

RELOAD_WORKSPACE = """
mutation ReloadWorkspace {
  reloadWorkspace {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

RELOAD_LOCATION = """
mutation ReloadLocation($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry {
      name
      loadStatus
      locationOrLoadError { __typename ... on PythonError { message } }
    }
    ... on PythonError { message }
    ... on RepositoryLocationNotFound { message }
    ... on ReloadNotSupported { message }
    ... on UnauthorizedError { message }
  }
}
"""

LOCATION_STATUSES = """
query LocationStatuses {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation { repositories { name assetNodes { assetKey { path } } } }
        }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: ``reached`` is False when no webserver answered."""

    reached: bool
    message: str
    locations: dict[str, str] = field(default_factory=dict)  # name -> "LOADED" or the load error


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 60.0) -> dict:
    """POST one GraphQL query to ``<url>/graphql`` and return its ``data``."""
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors from {url}: {body['errors']}")
    return body["data"]


def _entries(entries: list[dict]) -> dict[str, str]:
    result = {}
    for entry in entries:
        loc = entry.get("locationOrLoadError") or {}
        if loc.get("__typename") == "PythonError":
            result[entry["name"]] = f"ERROR: {loc.get('message', '').strip()}"
        else:
            result[entry["name"]] = entry.get("loadStatus", "")
    return result


#: A reload that timed out (the webserver is up but busy) is sent again this many times in all.
RELOAD_ATTEMPTS = 3


class Slow(Exception):
    """The webserver accepted the connection but did not answer in time."""


def _mutate(url: str, query: str, variables: dict | None, timeout: float) -> dict | None:
    """Send a reload mutation: None when no webserver runs at ``url``; retried when it is only slow.

    "Not running" (the connection is refused or cannot be made) and "slow" (connected, no answer
    within the timeout) are different faults: the first is answered at once, the second is tried
    again, up to :data:`RELOAD_ATTEMPTS` times, then raised as :class:`Slow`.
    """
    for attempt in range(1, RELOAD_ATTEMPTS + 1):
        try:
            return graphql(url, query, variables, timeout=timeout)
        except requests.exceptions.ReadTimeout:
            if attempt == RELOAD_ATTEMPTS:
                raise Slow(
                    f"the webserver at {url} is running but did not answer the reload within {timeout:g}s "
                    f"({RELOAD_ATTEMPTS} tries); it is busy, and will pick the change up when it gets to it"
                ) from None
        except requests.RequestException:
            return None
    return None  # unreachable: the loop returns or raises


def reload_workspace(url: str, timeout: float = 120.0) -> ReloadResult:
    """Ask the webserver to re-read workspace.yaml; unreachable or slow is reported, not raised."""
    try:
        data = _mutate(url, RELOAD_WORKSPACE, None, timeout)
    except Slow as exc:
        return ReloadResult(True, f"warning: {exc}")
    if data is None:
        return ReloadResult(False, f"no webserver answered at {url} (nothing listens there); it will read workspace.yaml when it starts")
    result = data["reloadWorkspace"]
    if result["__typename"] != "Workspace":
        return ReloadResult(True, f"reload failed: {result.get('message', result['__typename'])}")
    locations = _entries(result["locationEntries"])
    return ReloadResult(True, "workspace reloaded", locations)


def reload_location(url: str, name: str, timeout: float = 120.0) -> ReloadResult:
    """Reload one location whose workspace entry did not change (its code did).

    Falls back to ``reloadWorkspace`` when the webserver does not know the location yet.
    """
    try:
        data = _mutate(url, RELOAD_LOCATION, {"name": name}, timeout)
    except Slow as exc:
        return ReloadResult(True, f"warning: {exc}")
    if data is None:
        return ReloadResult(False, f"no webserver answered at {url} (nothing listens there); it will load {name} when it starts")
    result = data["reloadRepositoryLocation"]
    if result["__typename"] == "RepositoryLocationNotFound":
        return reload_workspace(url, timeout)
    if result["__typename"] != "WorkspaceLocationEntry":
        return ReloadResult(True, f"reload of {name} failed: {result.get('message', result['__typename'])}")
    return ReloadResult(True, f"location {name} reloaded", _entries([result]))


def location_statuses(url: str, timeout: float = 30.0) -> dict[str, dict]:
    """``{location: {"status": ..., "assets": [...]}}`` as the webserver sees them now."""
    data = graphql(url, LOCATION_STATUSES, timeout=timeout)["workspaceOrError"]
    result = {}
    for entry in data.get("locationEntries", []):
        loc = entry.get("locationOrLoadError") or {}
        assets = sorted(
            "/".join(node["assetKey"]["path"])
            for repo in loc.get("repositories", []) or []
            for node in repo.get("assetNodes", [])
        )
        status = f"ERROR: {loc.get('message', '')}" if loc.get("__typename") == "PythonError" else entry["loadStatus"]
        result[entry["name"]] = {"status": status, "assets": assets}
    return result


# -- every replica -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaReload:
    """One replica's reload: which replica, and what its reload did."""

    replica: Replica
    result: ReloadResult

    def line(self) -> str:
        """One log line naming the replica; a replica that did not answer reads as a warning."""
        message = self.result.message
        where = self.replica.name if self.replica.name == self.replica.url else f"{self.replica.name} ({self.replica.url})"
        if message.startswith("warning: "):
            return f"warning: webserver {where}: {message[len('warning: '):]}"
        if not self.result.reached:
            return f"warning: webserver {where}: {message}"
        return f"webserver {where}: {message}"


@dataclass(frozen=True)
class FleetReload:
    """What a reload did on every replica (in the replicas' order), plus notes from finding them."""

    replicas: tuple[ReplicaReload, ...]
    notes: tuple[str, ...] = ()

    @property
    def reached(self) -> tuple[str, ...]:
        """Names of the replicas that answered."""
        return tuple(r.replica.name for r in self.replicas if r.result.reached)

    @property
    def unreachable(self) -> tuple[str, ...]:
        """Names of the replicas that did not answer."""
        return tuple(r.replica.name for r in self.replicas if not r.result.reached)

    def lines(self) -> list[str]:
        """The notes, one line per replica, and a warning per location a replica reports in error."""
        out = list(self.notes)
        for r in self.replicas:
            out.append(r.line())
            for name, status in r.result.locations.items():
                if status.startswith("ERROR"):
                    out.append(f"warning: location {name} reports {status} on webserver {r.replica.name}")
        return out


def reload_replicas(
    replicas: Sequence[Replica], location: str | None = None, timeout: float = 120.0, notes: Sequence[str] = (),
) -> FleetReload:
    """Reload every replica on its own address, at most :data:`MAX_PARALLEL_RELOADS` at once: the
    whole workspace, or only ``location`` (falling back to the workspace as :func:`reload_location` does)."""

    def one(replica: Replica) -> ReplicaReload:
        if location is None:
            return ReplicaReload(replica, reload_workspace(replica.url, timeout))
        return ReplicaReload(replica, reload_location(replica.url, location, timeout))

    if not replicas:
        return FleetReload((), tuple(notes))
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_RELOADS, len(replicas)), thread_name_prefix="reload") as pool:
        done = tuple(pool.map(one, replicas))
    return FleetReload(done, tuple(notes))


def replica_statuses(replicas: Sequence[Replica], timeout: float = 3.0) -> dict[str, dict[str, dict] | None]:
    """``{replica name: location_statuses(...)}`` for every replica, None for one that did not answer."""

    def one(replica: Replica) -> dict[str, dict] | None:
        try:
            return location_statuses(replica.url, timeout=timeout)
        except Exception:  # noqa: BLE001 - any failure reads as "did not answer" in a status table
            return None

    if not replicas:
        return {}
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_RELOADS, len(replicas)), thread_name_prefix="status") as pool:
        return dict(zip((r.name for r in replicas), pool.map(one, replicas)))
