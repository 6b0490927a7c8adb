"""Run inside a virtualenv of one Dagster release (tests/test_runtime_versions.py): the runtime's parts at work.

``python run_location.py <project dir>``: loads ``<project>/definitions.py`` through the location entry
point's loader as repo ``team-a`` (so it gets the prefix-enforcing IO manager), materializes its assets
in an instance whose compute log manager is ``RepoComputeLogManager``, runs a printing job as a run of
the location ``team-a``, and prints one JSON line describing what happened.
"""

import json
import sys
from pathlib import Path

from dagster import DagsterInstance, job, op, reconstructable
from dagster._core.execution.api import execute_run

try:  # dagster >= 1.11
    from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
except ImportError:  # dagster 1.10
    from dagster._core.remote_representation.origin import (
        RegisteredCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )

from meta_deployer_runtime.location import load

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


@op
def shout() -> None:
    print("shouted-to-stdout")


@job
def noisy() -> None:
    shout()


def main(project: Path) -> dict:
    storage, home = project / "storage", project / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(
        "compute_logs:\n  module: meta_deployer_runtime.compute_logs\n  class: RepoComputeLogManager\n  config: {}\n"
    )
    env = {"META_DEPLOYER_REPO": "team-a", "META_DEPLOYER_PREFIX": "repos/team-a",
           "META_DEPLOYER_STORAGE_DIR": str(storage)}
    targets = load({"name": "team-a", "code_source": {"kind": "python_file", "value": "definitions.py"},
                    "working_directory": str(project), "environment": env})
    defs = targets["defs"]
    with DagsterInstance.from_config(str(home)) as instance:
        materialized = defs.get_implicit_global_asset_job_def().execute_in_process(instance=instance)
        recon = reconstructable(noisy)
        origin = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("team-a"), "__repository__"), "noisy")
        run = instance.create_run_for_job(noisy, run_config=IN_PROCESS, remote_job_origin=origin,
                                          job_code_origin=recon.get_python_origin())
        ran = execute_run(recon, run, instance)
        captured = [r.dagster_event.event_type_value for r in instance.all_logs(run.run_id)
                    if r.dagster_event and r.dagster_event.event_type_value == "LOGS_CAPTURED"]
        manager = type(instance.compute_log_manager).__name__
    files = sorted(str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file())
    logs = [f for f in files if run.run_id in f]
    return {
        "materialized": materialized.success,
        "ran": ran.success,
        "run_id": run.run_id,
        "manager": manager,
        "captured": len(captured),
        "files": files,
        "stdout_text": "".join((storage / f).read_text() for f in logs if f.endswith(".out")),
    }


if __name__ == "__main__":
    print("RESULT=" + json.dumps(main(Path(sys.argv[1]).resolve())))
