"""``sync-repos`` fan-out: one queued ``update_repo`` run per moved repo.

The ``sync_repos`` job finds the moved repos (``meta_deployer.sync``) and submits
one ``update_repo`` run for each to the instance's run queue, tagged
``meta_deployer/repo=<name>``: the queue's per-repo tag limit (dagster.yaml)
keeps one deploy per repo at a time, and different repos deploy concurrently up
to the queue's limits, each with its own run history.

The runs belong to the deployer's own code location (``naming.SELF_LOCATION``
in workspace.yaml), so whichever daemon serves that workspace launches them:
``make dev``'s, or the platform's ``dagster-daemon``. ``make sync-repos`` runs
``dagster job execute``, which has no daemon: its runs stay QUEUED until a
daemon runs (:func:`daemon_running` tells which, so the job can say so).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import QueuedRunCoordinator

from meta_deployer import naming
from meta_deployer.model import Log

#: The job each moved repo gets.
UPDATE_JOB = "update_repo"
#: A queue daemon whose last heartbeat is older than this is taken as not running.
HEARTBEAT_FRESH_S = 60.0


def _origin(job_name: str) -> RemoteJobOrigin:
    """The job in the deployer's own code location, as the daemon's workspace names it."""
    location = RegisteredCodeLocationOrigin(naming.SELF_LOCATION)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)


def update_run_config(deploy_config: Mapping[str, Any], platform: str) -> dict[str, Any]:
    """An update_repo run config (``deploy_run_config``) pinned to ``platform`` (the deployer resource's config)."""
    return {**deploy_config, "resources": {"deployer": {"config": {"platform": platform}}}}


def _waiting(instance: DagsterInstance, name: str, run_config: Mapping[str, Any]) -> str | None:
    """A run of ``name`` already waiting in the queue with exactly this run config (it deploys the
    branch head when it starts, so a second one would find nothing to do)."""
    waiting = instance.get_runs(
        RunsFilter(
            job_name=UPDATE_JOB,
            tags={naming.RUN_TAG_KEY: name},
            statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED],
        ),
        limit=20,
    )
    for run in waiting:
        if run.run_config == run_config:
            return run.run_id
    return None


def submit_updates(
    instance: DagsterInstance, run_configs: Mapping[str, Mapping[str, Any]], log: Log, parent_run_id: str | None = None
) -> dict[str, str]:
    """Queue one ``update_repo`` run per repo (``name -> run config``); returns ``name -> run id``."""
    from meta_deployer import definitions  # the job definitions (this module is imported by them)

    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        raise RuntimeError(
            f"the instance's run coordinator is {type(instance.run_coordinator).__name__}; sync-repos submits its "
            "runs to the run queue, so it needs the QueuedRunCoordinator (Dagster's default; see dagster.yaml)"
        )
    # The job as the deployer's code location defines it (with its resources), and its Python origin
    # (the same module `dagster job execute -m meta_deployer.definitions` loads).
    job_def = definitions.defs.get_job_def(UPDATE_JOB)
    recon = ReconstructableRepository.for_module(definitions.__name__, "defs").get_reconstructable_job(UPDATE_JOB)
    submitted = {}
    for name, run_config in run_configs.items():
        existing = _waiting(instance, name, run_config)
        if existing:
            log(f"{name}: update_repo run {existing} is already queued with this config; not submitting another")
            submitted[name] = existing
            continue
        tags = {naming.RUN_TAG_KEY: name}
        if parent_run_id:
            tags["meta_deployer/sync_run"] = parent_run_id
        run = instance.create_run_for_job(
            job_def,
            run_config=dict(run_config),
            tags=tags,
            remote_job_origin=_origin(UPDATE_JOB),
            job_code_origin=recon.get_python_origin(),
        )
        instance.submit_run(run.run_id, workspace=None)  # type: ignore[arg-type]  # the queue needs none
        log(f"{name}: submitted update_repo run {run.run_id} (queued)")
        submitted[name] = run.run_id
    return submitted


def daemon_running(instance: DagsterInstance, now: float | None = None) -> bool:
    """Whether a daemon dequeues runs for this instance (a fresh queued-run-coordinator heartbeat)."""
    beat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return beat is not None and (now or time.time()) - beat.timestamp < HEARTBEAT_FRESH_S


def queue_notice(instance: DagsterInstance, count: int) -> str:
    """What happens next to the submitted runs, for the log and ``make sync-repos``."""
    if daemon_running(instance):
        return f"{count} update_repo run(s) queued; the running daemon launches them (see Runs in the UI)"
    return (
        f"{count} update_repo run(s) queued, but no Dagster daemon is running for this instance: they stay QUEUED "
        "until one runs (`make dev`, or the platform's dagster-daemon), which then deploys them"
    )
