"""Observe live state and execute plans through the gateway (side effects).

:func:`observe` runs every kind's read (read calls only) on a small thread pool
and returns one observation per kind. :func:`apply` runs a
:class:`~meta_deployer.platforms.aws.engine.Plan` step by step: a ``Call`` goes
to :meth:`AwsGateway.call` with its :class:`~meta_deployer.platforms.aws.engine.Output`
placeholders filled from earlier responses; ``WaitStable``,
``RunTaskToCompletion`` and ``DeletePrefix`` are the only other steps.

``run_to_completion`` runs a one-off task (the validation of a new revision,
before the service moves to it): RunTask, then DescribeTasks until it is
STOPPED, then its container's exit code and the last lines of its own log
stream. A non-zero exit, a task that could not start, or one still running at
its timeout (it is then stopped with StopTask) raise :class:`ValidationFailed`,
and nothing later in the plan runs: the service is never updated.

``wait_stable`` polls the ECS service with a hard timeout and a configurable
interval. When the rollout does not settle (timeout, or the deployment
circuit breaker rolled it back) it raises :class:`UnhealthyError` carrying the
service events, the stopped tasks' reasons and the last lines of the repo's
log group. The previous revision keeps serving (ECS keeps it running until
the new one is healthy), and the deployment record tags still describe it,
because they are written only after a stable rollout.

**Every failure path retires the new revision** (:meth:`Executor.retire_failed`).
Runs that ``EcsRunLauncher`` launches use the family's latest ACTIVE revision
(``DAGSTER_CONTAINER_CONTEXT`` names the family: it lives inside the task
definition, so it cannot name its own revision). So when an apply that
registered a revision fails before its rollout is stable, whatever failed (a
call before the wait, a circuit-breaker rollback, or our timeout), the service
is put back on the revision that served before (ECS leaves a timed-out rollout
running, so we roll it back ourselves) and the new revision is deregistered:
the latest ACTIVE revision is again the serving one. A revision left by a
deploy killed outright is retired by the next deploy (``resources/revisions.py``).

**Housekeeping after a stable rollout is best effort** (``Call.best_effort``):
the deployment record tags and the retirement of old revisions. The new
version already serves, so their failure becomes a warning in the result
(``warnings``) instead of failing the deploy, which would leave the serving
version unrecorded; the next plan sees the stale tags and writes them again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from meta_deployer.errors import AwsOperationError, BuildError, MetaDeployerError, TransientAwsError, UnhealthyError, ValidationFailed
from meta_deployer.platforms.aws.common import revision_of, rollout_failed, service_is_stable, task_outcome
from meta_deployer.platforms.aws.engine import (
    Call,
    DeletePrefix,
    IdempotencyToken,
    JsonText,
    Kind,
    Output,
    Plan,
    RunTaskToCompletion,
    Scope,
    Step,
    WaitStable,
    resolve_path,
)
from meta_deployer.platforms.aws.gateway import AwsGateway

Log = Callable[[str], None]
#: How many service events, stopped tasks and log lines an UnhealthyError carries.
FAILURE_EVENTS = 8
FAILURE_TASKS = 3
FAILURE_LOG_LINES = 20
#: StopTask's ``reason`` holds at most 255 characters
#: (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_StopTask.html).
STOP_REASON_MAX = 255
#: How often a delete refused with "in use" is retried (at most).
RELEASE_POLL_S = 2.0


def observe(kinds: Sequence[Kind], gateway: AwsGateway, scope: Scope) -> dict[str, Any]:
    """Every kind's observation of ``scope`` (read calls only, run concurrently).

    The reads are independent (a Cloud Map service needs its namespace, a rule
    its target group: those pairs run in sequence inside one kind's read), so
    they run on a small thread pool; boto3 clients are thread-safe. A no-op
    deploy costs one round trip of latency instead of eight.
    """
    with ThreadPoolExecutor(max_workers=len(kinds), thread_name_prefix="observe") as pool:
        futures = {kind.name: pool.submit(kind.read, gateway, scope) for kind in kinds}
        return {name: future.result() for name, future in futures.items()}  # re-raises the first error


class Executor:
    """Runs a plan's steps in order through the gateway; remembers each call's response."""

    def __init__(self, gateway: AwsGateway, log: Log, poll_interval_s: float):
        self.gateway = gateway
        self.log = log
        self.poll_interval_s = poll_interval_s
        self.responses: dict[str, Any] = {}
        #: Failures of best-effort calls, as readable lines (``apply`` returns them as ``warnings``).
        self.warnings: list[str] = []
        self._stable: set[int] = set()

    def resolve(self, value: Any) -> Any:
        """``value`` with every Output replaced by the value an earlier call returned."""
        if isinstance(value, Output):
            if value.call_id not in self.responses:
                raise AwsOperationError(f"plan error: {value} was used before the call that creates it ran")
            response = self.responses[value.call_id]
            try:
                return resolve_path(response, value.path)
            except (KeyError, IndexError, StopIteration, TypeError):
                if value.else_path is None:
                    raise AwsOperationError(f"plan error: the response of {value.call_id} has no {value.path}") from None
                return resolve_path(response, value.else_path)
        if isinstance(value, IdempotencyToken):
            return str(uuid.uuid4())
        if isinstance(value, JsonText):
            return str(JsonText(self.resolve(value.value)))
        if isinstance(value, Mapping):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.resolve(v) for v in value]
        return value

    def run(self, plan: Plan) -> dict[str, Any]:
        """Execute every step of ``plan`` in order; return its outputs, resolved, and ``warnings``.

        When a step fails, every rollout of the plan that registered a revision and did not
        reach stable retires it (:meth:`retire_failed`) before the error goes on.
        """
        try:
            for i, step in enumerate(plan.steps, 1):
                self.log(f"[{plan.name}] {i}/{len(plan.steps)} {step.describe()}")
                self.execute(step)
        except MetaDeployerError as exc:
            for step in plan.steps:
                if isinstance(step, WaitStable) and step.retire_on_failure and id(step) not in self._stable:
                    self.retire_failed(step, exc)
            raise
        return {**{key: self.resolve(value) for key, value in plan.outputs.items()}, "warnings": list(self.warnings)}

    def execute(self, step: Step) -> None:
        """Run one step: the fixed set is a Call, a WaitStable, a RunTaskToCompletion or a DeletePrefix."""
        match step:
            case Call(best_effort=True):
                try:
                    self.call(step)
                except MetaDeployerError as exc:
                    warning = f"{step.describe()} failed after the new version was serving; the next deploy retries it: {exc}"
                    self.log(f"  warning: {warning}")
                    self.warnings.append(warning)
            case Call():
                self.call(step)
            case WaitStable():
                self.wait(step)
            case RunTaskToCompletion():
                self.responses[f"task:{step.purpose}"] = run_to_completion(
                    self.gateway, step, self.resolve(step.request), self.poll_interval_s, self.log
                )
            case DeletePrefix(bucket=bucket, prefix=prefix):
                self.responses[f"delete-prefix:{prefix}"] = self.gateway.delete_prefix(bucket, prefix)
            case _:
                raise AwsOperationError(f"no executor for step {type(step).__name__}")

    def _send(self, call: Call, params: Mapping[str, Any]) -> Any:
        return self.gateway.call(call.service, call.operation, params, resource=call.resource, ok=call.ok)

    def call(self, call: Call) -> Any:
        """Send one call (and its fallback or follow-up); remember the response under its id."""
        params = self.resolve(call.params)
        deadline = time.monotonic() + (call.release_timeout_s or 0)
        while True:
            try:
                response = self._send(call, params)
                break
            except TransientAwsError:
                # Retry only a delete AWS refuses while the resource is still in use.
                if call.release_timeout_s is None or time.monotonic() > deadline:
                    raise
                time.sleep(min(RELEASE_POLL_S, max(self.poll_interval_s, 0.01)))
            except AwsOperationError as exc:
                hint = dict(call.hints).get(getattr(exc, "code", None) or "")
                if hint:
                    raise AwsOperationError(f"{exc}. {hint}") from exc
                raise
        if call.until is not None:
            response = self._until(call, params, response)
        if response is None and call.fallback is not None:
            response = self.gateway.call(
                call.fallback.service, call.fallback.operation, self.resolve(call.fallback.params),
                resource=call.fallback.resource,
            )
        self.responses[call.id] = response
        follow = call.follow_up(response or {}, params) if call.follow_up else None
        if follow is not None:
            self.log(f"  then: {follow.describe()}")
            self.call(follow)
        return response

    def _until(self, call: Call, params: Mapping[str, Any], response: Any) -> Any:
        """Repeat ``call`` until ``call.until`` holds for its response (hard timeout)."""
        assert call.until is not None
        deadline = time.monotonic() + call.until_timeout_s
        while not call.until(response or {}):
            if time.monotonic() > deadline:
                raise AwsOperationError(f"{call.describe()}: not done within {call.until_timeout_s:g}s")
            time.sleep(min(RELEASE_POLL_S, max(self.poll_interval_s, 0.01)))
            response = self._send(call, params)
        return response

    def wait(self, step: WaitStable) -> None:
        """Wait for a stable rollout (on failure, ``run`` retires the revision this plan registered)."""
        revision = self.resolve(step.task_definition)
        self.responses["wait"] = wait_stable(
            self.gateway, step.cluster, step.service, revision, step.log_group, step.timeout_s,
            self.poll_interval_s, self.log,
        )
        self._stable.add(id(step))

    def retire_failed(self, step: WaitStable, exc: MetaDeployerError) -> None:
        """The rollout of ``step`` failed: put the service back on what served, retire the new revision.

        - Nothing registered yet (the failure came first): nothing to do.
        - The service runs another revision (the circuit breaker rolled back, or the update
          never happened): deregister the new one.
        - The service still runs the new one (our timeout: ECS keeps trying) and a revision
          served stably before: UpdateService back to it, then deregister the new one.
        - Nothing served before (a first deploy): leave it; no workspace entry points at it,
          and the next deploy waits for it again.

        Best effort: a failure here is added to the error's message, never raised in its place.
        """
        try:
            revision = self.resolve(step.task_definition)
        except AwsOperationError:
            return  # the register call never ran
        new = revision_of(revision)
        notes = []
        try:
            service = self.gateway.get_service(step.cluster, step.service)
            serving = revision_of((service or {}).get("taskDefinition") or "")
            if serving == new and step.previous:
                self.gateway.call(
                    "ecs", "UpdateService",
                    {"cluster": step.cluster, "service": step.service, "taskDefinition": step.previous},
                    resource=f"ECS service {step.service} in cluster {step.cluster}",
                )
                notes.append(f"Rolled ECS service {step.service} back to {step.previous}.")
                serving = step.previous
            if serving and serving != new:
                self.gateway.call(
                    "ecs", "DeregisterTaskDefinition", {"taskDefinition": revision}, resource=f"task definition {revision}",
                    ok=("ClientException",),
                )
                notes.append(f"Deregistered {new}; runs keep using {serving}.")
        except MetaDeployerError as cleanup:
            notes.append(f"Could not retire {new} ({cleanup}); the next deploy retires it.")
        if notes:
            exc.args = ("\n".join([str(exc.args[0]) if exc.args else str(exc), *notes]), *exc.args[1:])
            self.log(f"[{step.service}] {' '.join(notes)}")


def apply(plan: Plan, gateway: AwsGateway, log: Log, poll_interval_s: float = 10.0) -> dict[str, Any]:
    """Execute ``plan``; return its outputs (the revision serving...), resolved, and ``warnings``
    (best-effort calls that failed after the new version was serving)."""
    return Executor(gateway, log, poll_interval_s).run(plan)


def wait_stable(
    gateway: AwsGateway,
    cluster: str,
    name: str,
    task_definition: str,
    log_group: str,
    timeout_s: float,
    poll_interval_s: float,
    log: Log,
) -> dict[str, Any]:
    """Poll until the service runs ``task_definition`` stably; raise UnhealthyError otherwise."""
    deadline = time.monotonic() + timeout_s
    last_state = None
    service: dict[str, Any] | None = None
    while True:
        service = gateway.get_service(cluster, name)
        if service is None:
            raise UnhealthyError(f"ECS service {name} in cluster {cluster} disappeared while waiting for it to be stable")
        if service_is_stable(service, task_definition):
            log(f"[{name}] stable: {service.get('runningCount')}/{service.get('desiredCount')} running on {revision_of(task_definition)}")
            return service
        failed = rollout_failed(service, task_definition)
        if failed:
            raise UnhealthyError(failure_report(gateway, service, cluster, name, log_group, f"the deployment circuit breaker failed the rollout: {failed}"))
        state = status_line(service)
        if state != last_state:
            log(f"[{name}] waiting: {state}")
            last_state = state
        if time.monotonic() >= deadline:
            raise UnhealthyError(
                failure_report(gateway, service, cluster, name, log_group, f"not stable within {timeout_s:g}s ({state})")
            )
        time.sleep(max(0.0, min(poll_interval_s, deadline - time.monotonic())))


def run_to_completion(
    gateway: AwsGateway, step: RunTaskToCompletion, request: Mapping[str, Any], poll_interval_s: float, log: Log
) -> dict[str, Any]:
    """Run the one-off task of ``step`` (``request``: its RunTask parameters, resolved) until it stops.

    Returns the stopped task when its container exited 0; raises ValidationFailed otherwise (exit
    code and log tail, or why it could not start, or the timeout after StopTask).
    """
    revision = revision_of(str(request.get("taskDefinition") or ""))
    resource = f"one-off task of {revision} in cluster {step.cluster}"
    try:
        started = gateway.call("ecs", "RunTask", request, resource=resource) or {}
    except AwsOperationError as exc:
        hint = dict(step.hints).get(getattr(exc, "code", None) or "")
        if hint:
            raise AwsOperationError(f"{exc}. {hint}") from exc
        raise
    tasks = started.get("tasks") or []
    if not tasks:
        # RunTask reports what it could not place in ``failures`` instead of an error (API_RunTask).
        failures = "; ".join(
            " ".join(str(f.get(k)) for k in ("reason", "detail", "arn") if f.get(k)) for f in started.get("failures") or []
        )
        raise ValidationFailed(_task_report(step, revision, None, f"ECS started no task ({failures or 'no reason given'})", []))
    arn = tasks[0]["taskArn"]
    task_id = arn.rsplit("/", 1)[-1]
    stream = f"{step.log_stream_prefix}/{task_id}"
    log(f"[{step.purpose}] task {task_id} of {revision} started; its log: {step.log_group} {stream}")
    deadline = time.monotonic() + step.timeout_s
    task: dict[str, Any] = tasks[0]
    last_status = None
    while True:
        task = gateway.describe_task(step.cluster, arn) or task
        status = task.get("lastStatus")
        if status != last_status:
            log(f"[{step.purpose}] task {task_id}: {status}")
            last_status = status
        if status == "STOPPED":
            break
        if time.monotonic() >= deadline:
            why = f"still {status} after {step.timeout_s:g}s (META_DEPLOYER_ECS_VALIDATE_TIMEOUT)"
            gateway.call(
                "ecs", "StopTask",
                {"cluster": step.cluster, "task": arn, "reason": f"meta_deployer: {step.purpose}: {why}"[:STOP_REASON_MAX]},
                resource=resource,
            )
            lines = _tail(gateway, step.log_group, stream)
            raise ValidationFailed(_task_report(step, revision, task_id, f"the task was {why}, so it was stopped", lines))
        time.sleep(max(0.0, min(poll_interval_s, deadline - time.monotonic())))
    outcome = task_outcome(task, step.container)
    lines = _tail(gateway, step.log_group, stream)
    report = _validator_report(gateway, step, stream) if step.validates and outcome.started else []
    if outcome.succeeded:
        for line in lines[-5:]:
            log(f"[{step.purpose}] {line}")
        log(f"[{step.purpose}] task {task_id} exited 0")
        if report:
            version = validator_outcome(step.validates, report, 0, lines)
            log(f"[{step.purpose}] {step.validates} loaded with dagster {version}")
            return {**task, "dagster_version": version}
        return {**task, "dagster_version": None}
    if not outcome.started:
        why = f"the task could not start: {outcome.reason}"
    else:
        why = f"the command exited {outcome.exit_code} ({outcome.reason})"
    details = _task_report(step, revision, task_id, why, lines)
    if report:
        try:
            validator_outcome(step.validates, report, outcome.exit_code or 1, lines)
        except BuildError as exc:  # the validator's verdict (the version error first), then the task's report
            raise type(exc)(f"{exc}\n{details}") from None
    raise ValidationFailed(details)


#: How many of a validation task's last log lines are searched for the validator's report.
VALIDATOR_LOG_LINES = 1000


def _validator_report(gateway: AwsGateway, step: RunTaskToCompletion, stream: str) -> list[str]:
    """The validator's report lines (its release, its result) in the task's log."""
    from meta_deployer.platforms.location import is_validator_line

    return [line.strip() for line in _tail(gateway, step.log_group, stream, VALIDATOR_LOG_LINES) if is_validator_line(line)]


def validator_outcome(repo: str, report: list[str], exit_code: int, tail: list[str]) -> str:
    """The Dagster release from the validator's report lines of an ECS task (see ``location.validation_outcome``)."""
    from meta_deployer.platforms.location import validation_outcome

    return validation_outcome(repo, "its image (the ECS validation task)", "\n".join(report), exit_code, "\n".join(tail))


def _tail(gateway: AwsGateway, group: str, stream: str, count: int = FAILURE_LOG_LINES) -> list[str]:
    try:
        events = gateway.log_stream_tail(group, stream, count)
    except AwsOperationError as exc:
        return [f"(could not read log stream {stream} of {group}: {exc})"]
    return [e.get("message", "").rstrip() for e in events]


def _task_report(step: RunTaskToCompletion, revision: str, task_id: str | None, why: str, lines: list[str]) -> str:
    """A readable failure: which repo and step, why, what still serves, and the task's last log lines."""
    out = [
        f"{step.purpose} failed: {why}.",
        f"Command: {' '.join(step.command)} in a one-off task of {revision} in cluster {step.cluster}"
        + (f" (task {task_id})." if task_id else "."),
        "The ECS service was not touched: the version serving (if any) keeps serving, and the workspace entry is unchanged.",
    ]
    if lines:
        stream = f"{step.log_stream_prefix}/{task_id}"
        out.append(f"Last {len(lines)} line(s) of {step.log_group} {stream}:")
        out += [f"  {line}" for line in lines]
    elif task_id:
        out.append(f"Log stream {step.log_group} {step.log_stream_prefix}/{task_id}: no lines.")
    return "\n".join(out)


def status_line(service: dict[str, Any]) -> str:
    """``running 0/1, rollout IN_PROGRESS, 2 deployments`` for a described service."""
    deployments = service.get("deployments") or []
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
    return (
        f"running {service.get('runningCount', 0)}/{service.get('desiredCount', 0)}, "
        f"rollout {primary.get('rolloutState', 'unknown')}, {len(deployments)} deployment(s)"
    )


def failure_report(
    gateway: AwsGateway, service: dict[str, Any], cluster: str, name: str, log_group: str, why: str
) -> str:
    """A readable failure: what happened, events, stopped tasks, last log lines, and what still serves."""
    lines = [
        f"ECS service {name} in cluster {cluster}: {why}.",
        "The previous version (if any) keeps serving and the workspace entry is unchanged.",
    ]
    events = service.get("events") or []
    if events:
        lines.append("Recent service events:")
        lines += [f"  {e.get('createdAt', '')} {e.get('message', '')}".rstrip() for e in events[:FAILURE_EVENTS]]
    try:
        tasks = gateway.stopped_tasks(cluster, name, FAILURE_TASKS)
    except AwsOperationError as exc:
        tasks = []
        lines.append(f"(could not list stopped tasks: {exc})")
    if tasks:
        lines.append("Stopped tasks:")
        for task in tasks:
            reasons = [
                f"{c.get('name')}: exit {c.get('exitCode')} {c.get('reason', '')}".strip()
                for c in task.get("containers", [])
            ]
            lines.append(f"  {task.get('taskArn', '').rsplit('/', 1)[-1]}: {task.get('stoppedReason', 'no reason given')}; {'; '.join(reasons)}")
    else:
        lines.append("Stopped tasks: none reported.")
    try:
        events_log = gateway.recent_log_events(log_group, FAILURE_LOG_LINES)
    except AwsOperationError as exc:
        events_log = []
        lines.append(f"(could not read log group {log_group}: {exc})")
    if events_log:
        lines.append(f"Last {len(events_log)} line(s) of {log_group}:")
        lines += [f"  {e.get('message', '').rstrip()}" for e in events_log]
    else:
        lines.append(f"Log group {log_group}: no lines yet.")
    return "\n".join(lines)
