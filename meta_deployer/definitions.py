"""Dagster wiring: one resource, thin ops, the jobs and the repos sensor.

Each op takes config and the ``deployer`` resource, calls one step of
``meta_deployer.pipeline``, logs, and returns the growing ``DeployState``.
Reading ``deploy_repo`` reads like the pipeline:

    clone -> build -> push -> register -> write_workspace -> reload

``sync_repos`` deploys nothing itself: it queues one tagged ``update_repo`` run per moved repo
(``meta_deployer.fanout``), so repos deploy in parallel up to the run queue's limits.

The jobs run with the in-process executor: deploy steps are I/O-bound and run
in order, and a subprocess per op would set the floor of every no-op run.
"""


import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Optional, TypeVar

from dagster import (
    AssetKey,
    AssetMaterialization,
    Config,
    ConfigurableResource,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    Failure,
    MetadataValue,
    OpExecutionContext,
    RetryRequested,
    RunConfig,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    graph,
    in_process_executor,
    job,
    op,
    sensor,
)
from pydantic import Field, PrivateAttr

from meta_deployer import configsource, fanout, grants, history, naming
from meta_deployer.errors import MetaDeployerError, Retryable
from meta_deployer.pipeline import Deployer, DeployState, deployment_summary
from meta_deployer.settings import Settings
from meta_deployer.state import record_store
from meta_deployer.worker import WORKER_TAG, is_dead, this_worker
from meta_deployer.runconfig import deploy_run_config, remove_run_config, spec_dict_from_run_config
from meta_deployer.spec import RepoSpec, parse_spec

T = TypeVar("T")

# dagster 1.13 flags the sensor decorator's own default `owners` argument as beta on every load.
warnings.filterwarnings("ignore", message=r"Parameter `owners` .* is currently in beta")

SENSOR_INTERVAL_S = 15
#: How long a tick waits for the configuration checkout another process is fetching or reading: well
#: under the daemon's sensor evaluation timeout (60 s); a busy checkout skips the tick, changing nothing.
SENSOR_LOCK_TIMEOUT_S = 10.0
DEAD_DEPLOYS_INTERVAL_S = 30
#: The add_repo launchpad default: the example location shipped with this project.
EXAMPLE_SPEC = {"name": "hello", "git_url": ".", "branch": "main", "working_directory": "examples/hello", "python_file": "definitions.py"}


class DeployerResource(ConfigurableResource):
    """Builds the ``Deployer`` from environment settings (README: Settings)."""

    platform: Optional[str] = Field(
        default=None, description="dev, docker or ecs; default: META_DEPLOYER_PLATFORM, else dev."
    )

    _deployer: Optional[Deployer] = PrivateAttr(default=None)

    def get(self) -> Deployer:
        """The run's Deployer, made once: every op of a run shares its platform and AWS clients."""
        if self._deployer is None:
            settings = Settings.from_env()
            if self.platform:
                settings = settings.with_platform(self.platform)
            self._deployer = Deployer(settings)
        return self._deployer


class LocationConfig(Config):
    """One location of a repository with several (config.yml ``locations:``)."""

    name: str = Field(description="The location's name inside the repo; it deploys as <repo>-<name>.")
    python_file: Optional[str] = Field(default=None, description="Definitions file, relative to working_directory.")
    module_name: Optional[str] = Field(default=None, description="Module holding the Definitions.")
    package_name: Optional[str] = Field(default=None, description="Package holding the Definitions.")
    working_directory: Optional[str] = Field(default=None, description="The location's folder inside the repo.")


class RepoConfig(Config):
    """The repo spec as run config (same fields and rules as repos/<name>/config.yml)."""

    name: str = Field(description="Repo and code location name (a DNS label).")
    git_url: str = Field(description="Git URL: https://, ssh://, file://, or a path ('.' is this project).")
    branch: str = Field(default="main", description="Branch whose head is deployed.")
    python_file: Optional[str] = Field(default=None, description="Definitions file, relative to working_directory.")
    module_name: Optional[str] = Field(default=None, description="Module holding the Definitions.")
    package_name: Optional[str] = Field(default=None, description="Package holding the Definitions.")
    working_directory: Optional[str] = Field(default=None, description="Folder inside the repo to run from.")
    locations: list[LocationConfig] = Field(
        default_factory=list, description="Several code locations in this repository (each deployed as <name>-<location>)."
    )
    s3_prefix: Optional[str] = Field(default=None, description="Storage prefix; must be repos/<name> (optional).")
    cpu: int = Field(default=256, description="Fargate cpu units (ECS).")
    memory: int = Field(default=512, description="Fargate memory in MiB; must pair with cpu (ECS).")
    environment: dict[str, str] = Field(default_factory=dict, description="Plain environment variables.")
    secrets: dict[str, str] = Field(default_factory=dict, description="Secret name -> Secrets Manager/SSM ARN.")
    read_access: list[str] = Field(default_factory=list, description="Repos whose assets this one may read.")

    def to_spec(self, source: str = "run config") -> RepoSpec:
        return parse_spec(spec_dict_from_run_config(self.model_dump()), source)


def _claim(context: OpExecutionContext) -> None:
    """Tag the run with the process that executes it (see ``meta_deployer.worker``)."""
    context.instance.add_run_tags(context.run_id, {WORKER_TAG: this_worker()})


def _step(context: OpExecutionContext, fn: Callable[[], T]) -> T:
    """Run one step: transient errors retry, our own errors fail cleanly with their message."""
    try:
        return fn()
    except Retryable as exc:
        raise RetryRequested(max_retries=3, seconds_to_wait=2) from exc  # type: ignore[misc]
    except MetaDeployerError as exc:
        raise Failure(description=str(exc)) from exc


# -- ops -------------------------------------------------------------------------
@op(description="Clone or converge the repo at its branch, pin the commit, detect its code source.")
def clone(context: OpExecutionContext, config: RepoConfig, deployer: DeployerResource) -> DeployState:
    _claim(context)
    d = deployer.get()
    spec = _step(context, lambda: config.to_spec(f"run config of {context.run_id[:8]}"))
    state = _step(context, lambda: d.checkout(spec, context.log.info))
    context.add_output_metadata({"commit": state.checkout.commit, "unchanged": state.unchanged})
    return state


@op(description="Build the artifact: a virtualenv (dev) or an image (docker, ecs), validated.")
def build(context: OpExecutionContext, state: DeployState, deployer: DeployerResource) -> DeployState:
    return _step(context, lambda: deployer.get().build(state, context.log.info, context.run_id))


@op(description="Push the artifact to its registry (a logged no-op on dev).")
def push(context: OpExecutionContext, state: DeployState, deployer: DeployerResource) -> DeployState:
    return _step(context, lambda: deployer.get().publish(state, context.log.info))


@op(description="Run the new version on the platform and wait until it is healthy.")
def register(context: OpExecutionContext, state: DeployState, deployer: DeployerResource) -> DeployState:
    return _step(context, lambda: deployer.get().serve(state, context.log.info))


@op(description="Write the repo's entry into workspace.yaml (atomic), record code_locations/<name>.")
def write_workspace(context: OpExecutionContext, state: DeployState, deployer: DeployerResource) -> DeployState:
    state = _step(context, lambda: deployer.get().switch(state, context.log.info))
    for part in state.parts or (state,):  # a repository with several locations: one per location
        if not part.unchanged:
            summary = deployment_summary(part.record)
            if state.rollback_of:
                summary["rollback_of"] = state.rollback_of
            context.log_event(
                AssetMaterialization(
                    asset_key=["code_locations", part.spec.name],
                    description=(f"rolled back to {part.checkout.short_commit} (deployment {state.rollback_of})"
                                 if state.rollback_of else f"deployed {part.checkout.short_commit}"),
                    metadata={k: MetadataValue.text(str(v)) for k, v in summary.items()},
                )
            )
    return state


@op(description="Reload the webserver's workspace if it changed (no webserver is only a warning).")
def reload(context: OpExecutionContext, state: DeployState, deployer: DeployerResource) -> None:
    deployer.get().reload_after(state, context.log.info)


class RollbackConfig(Config):
    """Which earlier deployment to serve again."""

    name: str = Field(description="Repo name.")
    to: str = Field(description="A deployment id (the run id that deployed it) or its commit (7+ hex digits).")


#: How many of a repo's latest deployments a rollback may go back to.
ROLLBACK_HISTORY = 200


def deployment_history(instance, name: str, limit: int = ROLLBACK_HISTORY) -> list[history.DeploymentEntry]:
    """``name``'s successful deployments, newest first, from the materializations of code_locations/<name>."""
    records = instance.fetch_materializations(AssetKey(["code_locations", name]), limit=limit).records
    entries = []
    for record in records:
        materialization = record.asset_materialization
        if materialization is None:
            continue
        metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        found = history.entry(record.run_id, record.timestamp, metadata)
        if found is not None:
            entries.append(found)
        elif metadata.get("status") == "removed":
            break  # a removal ends the history a rollback may go back to
    return entries


@op(description="Check out the commit of an earlier successful deployment (its config.yml as it is now): a rollback.")
def rollback_checkout(context: OpExecutionContext, config: RollbackConfig, deployer: DeployerResource) -> DeployState:
    _claim(context)
    d = deployer.get()
    if naming.name_problem(config.name):
        raise Failure(description=f"run config name: repo name {naming.name_problem(config.name)}")
    spec = _step(context, lambda: d.spec_from_file(config.name))
    # A repository with several locations: a deployment is a run that deployed any of them (each has its history).
    entries = [e for part in spec.location_specs() for e in deployment_history(context.instance, part.name)]
    target = history.find(entries, config.to)
    if target is None:
        raise Failure(description=f"run config to: {config.to!r} is no earlier successful deployment of {config.name} "
                                  "(a deployment id or a commit of GET /v1/repositories/<name>/deployments)")
    context.log.info(f"{config.name}: rolling back to deployment {target.id} (commit {target.commit[:12]})")
    state = _step(context, lambda: d.checkout(spec, context.log.info, at=target.commit))
    context.add_output_metadata({"commit": state.checkout.commit, "unchanged": state.unchanged, "rollback_of": target.id})
    return replace(state, rollback_of=target.id)


class RemoveConfig(Config):
    """Which repo to remove."""

    name: str = Field(description="Repo name.")
    purge: bool = Field(default=False, description="Also delete its data (storage, logs, images).")


@op(description="Stop the repo's location, drop its workspace entry, checkout and config.")
def remove(context: OpExecutionContext, config: RemoveConfig, deployer: DeployerResource) -> bool:
    _claim(context)
    d = deployer.get()
    if naming.name_problem(config.name):
        raise Failure(description=f"run config name: repo name {naming.name_problem(config.name)}")
    # A repository with several locations: each location's history ends here too (rollbacks and the API read it).
    parts = sorted(n for n, r in d.registry.all().items() if r.parent == config.name and n != config.name)
    result = _step(context, lambda: d.remove(config.name, config.purge, context.log.info))
    if result.removed:
        for name in (config.name, *parts):
            context.log_event(
                AssetMaterialization(
                    asset_key=["code_locations", name],
                    description="removed",
                    metadata={"status": "removed", "purge": config.purge, "platform": d.platform.name},
                )
            )
    return result.workspace_changed


@op(description="Reload the webserver after a removal.")
def reload_after_remove(context: OpExecutionContext, changed: bool, deployer: DeployerResource) -> None:
    deployer.get().reload(changed, context.log.info)


@op(description="Repos whose branch head, config or platform moved: one queued update_repo run each.")
def submit_moved(context: OpExecutionContext, deployer: DeployerResource) -> dict:
    _claim(context)
    d = deployer.get()
    moved, problems = _step(context, lambda: d.moved(context.log.info))
    for problem in problems:
        context.log.warning(problem)
    context.log.info(f"{len(moved)} repo(s) moved")
    # Each run deploys to the platform the repos were compared against, whatever the daemon's own
    # environment says (e.g. make dev-with-repos compares on dev, then `make dev` runs the queue).
    configs = {spec.name: fanout.update_run_config(deploy_run_config(spec), d.platform.name) for spec in moved}
    try:
        submitted = fanout.submit_updates(context.instance, configs, context.log.info, context.run_id)
    except RuntimeError as exc:
        raise Failure(description=str(exc)) from exc
    if submitted:
        notice = fanout.queue_notice(context.instance, len(submitted))
        (context.log.info if fanout.daemon_running(context.instance) else context.log.warning)(notice)
    context.add_output_metadata({"moved": ", ".join(configs) or "none", "runs": MetadataValue.json(submitted)})
    return submitted


@graph
def deploy_steps(state: DeployState) -> DeployState:
    return write_workspace(register(push(build(state))))


# -- jobs ------------------------------------------------------------------------
_EXAMPLE_RUN_CONFIG = RunConfig(ops={"clone": RepoConfig(**EXAMPLE_SPEC)})


@job(executor_def=in_process_executor, config=_EXAMPLE_RUN_CONFIG, description="Add a repo as a code location.")
def add_repo() -> None:
    reload(deploy_steps(clone()))


@job(executor_def=in_process_executor, description="Redeploy a repo from its config and its branch head.")
def update_repo() -> None:
    reload(deploy_steps(clone()))


@job(executor_def=in_process_executor, description="Remove a repo's code location (data kept unless purge).")
def remove_repo() -> None:
    reload_after_remove(remove())


@job(
    executor_def=in_process_executor,
    description="Serve an earlier successful deployment again (its commit; the artifact is reused when kept).",
)
def rollback_repo() -> None:
    reload(deploy_steps(rollback_checkout()))


@job(
    executor_def=in_process_executor,
    description="Queue one update_repo run per repo whose branch head, config or platform moved (they deploy in parallel).",
)
def sync_repos() -> None:
    submit_moved()


# -- sensor ----------------------------------------------------------------------
@sensor(
    jobs=[add_repo, update_repo, remove_repo],
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    description="Deploys repos/<name>/config.yml (the local folder, or the configuration repository when "
    "META_DEPLOYER_CONFIG_GIT_URL is set): new -> add_repo, changed -> update_repo, deleted -> remove_repo.",
)
def repos_sensor(context: SensorEvaluationContext) -> SensorResult:
    settings = Settings.from_env()
    cursor = SensorCursor.parse(context.cursor)
    try:
        with configsource.opened(settings, lock_timeout=SENSOR_LOCK_TIMEOUT_S) as source:
            if source.from_git and source.commit == cursor.commit:
                # The configuration repository did not move: nothing to read, nothing to launch.
                return SensorResult(cursor=cursor.dump(), skip_reason=f"{source.label}: unchanged")
            scanned = source.scan(known=cursor.files)
            specs = None
            if any(not item.known for item in scanned.values()) or set(cursor.files) - set(scanned):
                # Something changed: every config as it is now, for the readers of a changed owner.
                specs = {n: item.spec for n, item in source.scan().items() if item.spec is not None}
    except MetaDeployerError as exc:
        # Could not read the configs: change nothing (never "every config was deleted"), keep the cursor.
        context.log.warning(f"configs not read: {exc}")
        return SensorResult(cursor=cursor.dump(), skip_reason=f"configs not read, nothing changed: {exc}")
    requests, problems = _requests_for(settings, cursor, scanned, specs or {})
    files, seq = requests.files, requests.seq
    for problem in problems:
        context.log.warning(f"skipped invalid config: {problem}")
    for note in requests.notes:
        context.log.info(f"redeploying a reader: {note}")
    where = f"{source.label}: " if source.from_git else ""
    skip = None
    if not requests.run_requests:
        skip = where + ("; ".join(problems) if problems else "no config.yml changed")
    elif source.from_git:
        context.log.info(f"{where}{len(requests.run_requests)} run request(s)")
    return SensorResult(
        run_requests=requests.run_requests,
        cursor=SensorCursor(files, seq, source.commit).dump(),
        skip_reason=skip,
    )


@dataclass
class _Requests:
    run_requests: list[RunRequest]
    files: dict[str, str]
    seq: int
    notes: list[str] = field(default_factory=list)


def _requests_for(
    settings: Settings, cursor: "SensorCursor", scanned: dict, specs: dict[str, RepoSpec] | None = None
) -> tuple[_Requests, list[str]]:
    """The run requests for what ``scanned`` says against the cursor, and the problems found.

    ``specs``: every valid config as it is now (given when something changed); a deployed reader
    whose grant from a changed owner changes with it is redeployed too (grants.regranted)."""
    records = record_store(settings).all()
    out = _Requests([], {}, cursor.seq)
    problems: list[str] = []

    def request(job_name: str, name: str, content_hash: str, run_config: dict) -> RunRequest:
        # Dagster launches one run per run key, ever: a change that repeats an earlier content
        # (A -> B -> A -> B) needs a key of its own, hence the sequence kept in the cursor.
        out.seq += 1
        return RunRequest(
            run_key=f"{job_name}:{name}:{content_hash}:{out.seq}",
            job_name=job_name,
            run_config=run_config,
            tags={naming.RUN_TAG_KEY: name},
        )

    for name, item in scanned.items():
        if item.known:
            out.files[name] = item.content_hash
            continue
        if item.error or item.spec is None:
            problems.append(item.error or f"{item.path}: unreadable")
            if name in cursor.files:
                out.files[name] = cursor.files[name]  # keep serving the last good version
            continue
        out.files[name] = item.content_hash
        if _deployed_as(records, item.spec, settings.platform):
            continue  # already deployed with exactly this config (e.g. by make add-repo)
        job_name = "update_repo" if name in cursor.files else "add_repo"
        out.run_requests.append(request(job_name, name, item.content_hash, deploy_run_config(item.spec)))
    for name in sorted(set(cursor.files) - set(scanned)):
        if records.get(name) is None and not any(r.parent == name for r in records.values()):
            continue  # already removed (e.g. by make remove-repo)
        out.run_requests.append(request("remove_repo", name, cursor.files[name], remove_run_config(name)))
    changed = {r.tags[naming.RUN_TAG_KEY] for r in out.run_requests}
    if specs and changed:
        for reader, reason in grants.regranted(changed, specs, records.get).items():
            out.run_requests.append(
                request("update_repo", reader, f"grants-{scanned[reader].content_hash}", deploy_run_config(specs[reader]))
            )
            out.notes.append(f"{reader}: {reason}")
    return out, problems


def _deployed_as(records: dict, spec: RepoSpec, platform: str) -> bool:
    """Every location of ``spec`` (itself, or each of its ``locations``) is deployed from exactly this
    config on ``platform``."""
    parent = spec.name if spec.locations else None
    for part in spec.location_specs():
        record = records.get(part.name)
        if record is None or record.spec_hash != spec.content_hash() or record.platform != platform or record.parent != parent:
            return False
    return True


@dataclass(frozen=True)
class SensorCursor:
    """The sensor's memory: each config file's content hash, how many run requests it made, and the
    configuration repository's commit those hashes were read at (None for the local folder)."""

    files: dict[str, str]
    seq: int = 0
    commit: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> "SensorCursor":
        """Read a cursor; the first format (a plain ``{name: hash}``) is still understood."""
        data = json.loads(text) if text else {}
        if "files" in data and isinstance(data.get("seq"), int):
            commit = data.get("commit")
            return cls(dict(data["files"]), data["seq"], commit if isinstance(commit, str) else None)
        return cls({k: v for k, v in data.items() if isinstance(v, str)})

    def dump(self) -> str:
        data: dict = {"files": self.files, "seq": self.seq}
        if self.commit is not None:
            data["commit"] = self.commit
        return json.dumps(data, sort_keys=True)


DEPLOY_JOBS = ("add_repo", "update_repo", "rollback_repo", "remove_repo", "sync_repos")


@sensor(
    minimum_interval_seconds=DEAD_DEPLOYS_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    description="Fails deploy runs whose process died (killed, closed terminal), so they never block their repo.",
)
def dead_deploys_sensor(context: SensorEvaluationContext) -> SkipReason:
    instance = context.instance
    failed = []
    for record in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED]), limit=500):
        run = record.dagster_run
        worker = run.tags.get(WORKER_TAG)
        if run.job_name not in DEPLOY_JOBS or not worker or not is_dead(worker):
            continue
        instance.report_run_failed(
            run, f"the process that ran this deploy ({worker}) is gone (killed or crashed); marked failed so that "
            f"the next deploy of {run.tags.get(naming.RUN_TAG_KEY, 'this repo')} is not held back"
        )
        failed.append(run.run_id[:8])
    return SkipReason(f"failed dead deploy run(s): {', '.join(failed)}" if failed else "no dead deploy runs")


defs = Definitions(
    jobs=[add_repo, update_repo, rollback_repo, remove_repo, sync_repos],
    sensors=[repos_sensor, dead_deploys_sensor],
    resources={"deployer": DeployerResource()},
)
