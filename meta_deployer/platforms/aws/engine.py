"""The generic AWS planner: resource kinds in, a plan of generic calls out (pure, no boto3).

The pipeline, in the style of chalice's deployer:

1. **Kinds.** A :class:`Kind` is one resource kind (a log group, a task role,
   an ECS service...), defined in one module under ``aws/resources/``. It says
   what it wants (``want(inputs)``: a desired value), how to read what exists
   (``read(gateway, scope)``: read calls only, run concurrently by the
   executor), how to converge (``converge(want, have, ctx)``) and how to remove
   (``remove(have, ctx)``); the last two return steps.
2. **Steps.** Almost every step is a :class:`Call`: an AWS ``service``, an
   ``operation`` and its ``params``, where a value known only after an earlier
   call is an :class:`Output` placeholder (``Output("service.create",
   "service.serviceArn")``). The few steps that are not one API call form a
   fixed set: :class:`WaitStable` (wait for a stable rollout, with a failure
   report), :class:`RunTaskToCompletion` (run a one-off ECS task, wait until it
   stops, and fail unless its container exited 0) and :class:`DeletePrefix`
   (delete every object under an S3 prefix).
   A delete AWS refuses while the resource is still in use is a ``Call`` with
   ``release_timeout_s``.
3. **The plan.** :func:`plan` runs the kinds in order (earlier kinds publish
   values such as an ARN in ``ctx.values`` for later ones); :func:`plan_removal`
   runs them by ``removal_rank``. :meth:`Plan.render` is the dry run; the
   executor (``aws/apply.py``) is the only thing that runs a plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meta_deployer.platforms.aws.settings import EcsSettings
from meta_deployer.settings import ImageSettings


@dataclass(frozen=True)
class Output:
    """A value of an earlier call's response, resolved by the executor.

    ``path`` is dotted: ``service.serviceArn``, ``TargetGroups.0.TargetGroupArn``,
    or ``Services[Name=x].Arn`` (the first list item whose ``Name`` is ``x``). ``else_path`` is
    tried when ``path`` is absent (the response of the call's ``fallback`` read).
    """

    call_id: str
    path: str
    else_path: str | None = None

    def __str__(self) -> str:
        return f"<{self.call_id}: {self.path}>"


@dataclass(frozen=True)
class JsonText:
    """A JSON string (sorted keys, no spaces) of ``value``, made by the executor once every
    :class:`Output` inside ``value`` is resolved: an environment variable whose JSON names a
    resource this plan creates (the deployer's container context names the workspace EFS)."""

    value: Any

    def __str__(self) -> str:
        import json

        return json.dumps(self.value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class IdempotencyToken:
    """A fresh client token (a UUID), made by the executor for each call it sends."""

    def __str__(self) -> str:
        return "<fresh token>"


def resolve_path(data: Any, path: str) -> Any:
    """The value at ``path`` (see :class:`Output`) in a response; KeyError when absent."""
    for part in path.split("."):
        if "[" in part:
            key, _, cond = part.partition("[")
            field_name, _, value = cond.rstrip("]").partition("=")
            data = next(item for item in data[key] if str(item.get(field_name)) == value)
        elif isinstance(data, list):
            data = data[int(part)]
        else:
            data = data[part]
    return data


@dataclass(frozen=True)
class Call:
    """One AWS API call: ``service`` (boto3 client name), ``operation`` (API name), ``params``.

    ``ok`` lists error codes that count as success ("already exists" on a
    create, "not found" on a delete); then ``fallback`` (a read) supplies the
    response when later calls need one of its outputs. ``hints`` add advice to
    the error of a given code. ``release_timeout_s`` retries the call while
    AWS reports the resource in use. ``follow_up`` may return one more call
    computed from the response (a setting the service dropped on create).
    ``best_effort`` marks housekeeping after the new version already serves
    (the deployment record, retiring old revisions): its failure is reported
    as a warning and the apply goes on, because failing the deploy then would
    leave a serving version unrecorded; the next plan converges it.
    """

    id: str
    service: str
    operation: str
    params: Mapping[str, Any]
    description: str
    resource: str
    ok: tuple[str, ...] = ()
    fallback: Call | None = None
    hints: tuple[tuple[str, str], ...] = ()
    release_timeout_s: float | None = None
    follow_up: Callable[[Mapping[str, Any], Mapping[str, Any]], Call | None] | None = field(default=None, compare=False)
    #: Repeat the call (a read) until this holds for its response, for at most ``until_timeout_s``.
    until: Callable[[Mapping[str, Any]], bool] | None = field(default=None, compare=False)
    until_timeout_s: float = 300.0
    best_effort: bool = False
    mutating = True

    @property
    def label(self) -> str:
        """``service.Operation``, as recorded by the gateway."""
        return f"{self.service}.{self.operation}"

    def describe(self) -> str:
        """What the call does, in words."""
        return self.description


@dataclass(frozen=True)
class WaitStable:
    """Wait until the ECS service runs ``task_definition`` stably, or fail with a report.

    With ``retire_on_failure`` (the revision was registered by this plan), when
    this apply fails anywhere before the rollout is stable (a call before the
    wait, a circuit-breaker rollback, a timeout), the executor puts the service
    back on ``previous`` (the revision that served stably before, if any) and
    deregisters the new revision, so the family's latest ACTIVE revision, which
    runs use, is the one serving. See ``apply.Executor.retire_failed``.
    """

    cluster: str
    service: str
    task_definition: str | Output
    log_group: str
    timeout_s: float
    retire_on_failure: bool = False
    previous: str | None = None
    mutating = False
    label = "wait.ServiceStable"

    def describe(self) -> str:
        """What the wait does, in words."""
        return f"wait up to {self.timeout_s:g}s for ECS service {self.service} to be stable on {self.task_definition}"


@dataclass(frozen=True)
class RunTaskToCompletion:
    """Run a one-off ECS task (``RunTask`` with ``request``) and wait until it stops; fail unless
    ``container`` exited 0.

    ``request`` holds the RunTask parameters (``taskDefinition`` may be an :class:`Output` of a
    revision this plan registers). The container's log is read back from its awslogs stream,
    ``<log_stream_prefix>/<task id>`` in ``log_group``. Past ``timeout_s`` the task is stopped
    (``StopTask``) and the step fails. ``purpose`` says what the task is for, in the log and the
    errors ("validate the definitions of repo sales"). The executor reports a failure as
    ``ValidationFailed``: nothing later in the plan runs.
    """

    purpose: str
    cluster: str
    request: Mapping[str, Any]
    container: str
    log_group: str
    log_stream_prefix: str
    timeout_s: float
    #: Advice added to the error of a given code, as in :class:`Call`.
    hints: tuple[tuple[str, str], ...] = ()
    #: The repo whose definitions the task validates, when its container runs the validator
    #: (``meta_deployer_runtime.validate``): its report, read back from the log, decides the outcome
    #: (the version error first) and its Dagster release is the step's result (``dagster_version``).
    validates: str = ""
    mutating = True
    label = "ecs.RunTaskToCompletion"

    @property
    def command(self) -> list[str]:
        """The command the task's container runs (its override), as sent."""
        overrides = (self.request.get("overrides") or {}).get("containerOverrides") or []
        return list(next((o.get("command") or [] for o in overrides if o.get("name") == self.container), []))

    def describe(self) -> str:
        """What the step does, in words."""
        return (
            f"{self.purpose}: run a one-off task of {self.request.get('taskDefinition')} in cluster {self.cluster} "
            f"({' '.join(self.command)}) and wait up to {self.timeout_s:g}s for it to exit 0"
        )


@dataclass(frozen=True)
class DeletePrefix:
    """Delete every object under ``prefix`` (which ends with ``/``) in ``bucket``."""

    bucket: str
    prefix: str
    mutating = True
    label = "s3.DeletePrefix"

    def describe(self) -> str:
        """What the step does, in words."""
        return f"delete every object under s3://{self.bucket}/{self.prefix} (PURGE)"


Step = Call | WaitStable | RunTaskToCompletion | DeletePrefix


@dataclass(frozen=True)
class Plan:
    """Frozen, ordered steps for one target. Empty means nothing to do.

    ``outputs`` are values the caller wants after the apply (``Output`` values
    are resolved by the executor), e.g. the task definition revision serving.
    """

    name: str
    steps: tuple[Step, ...] = ()
    outputs: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def actions(self) -> tuple[Step, ...]:
        """The steps (the name the ecs platform and its tests use)."""
        return self.steps

    @property
    def operations(self) -> list[str]:
        """``service.Operation`` of every step, in order."""
        return [s.label for s in self.steps]

    def __bool__(self) -> bool:
        return bool(self.steps)

    @property
    def mutating(self) -> tuple[Step, ...]:
        """The steps that change AWS (every step but waits; a one-off task counts: it starts a task)."""
        return tuple(s for s in self.steps if s.mutating)

    def render(self) -> str:
        """The plan as text, one numbered step a line (what a dry run prints)."""
        if not self.steps:
            return f"{self.name}: nothing to do"
        lines = [f"{self.name}: {len(self.steps)} action(s)"]
        lines += [f"  {i}. {s.describe()}" for i, s in enumerate(self.steps, 1)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class Scope:
    """What a read needs: the target's name, the settings, and what the plan is for."""

    name: str
    settings: EcsSettings
    removal: bool = False
    purge: bool = False
    #: The image settings, for the kinds that depend on the builder (bootstrap's CodeBuild project).
    images: ImageSettings | None = None


@dataclass
class Context:
    """Shared by the kinds of one plan: every kind's observation, and values earlier kinds published."""

    scope: Scope
    observed: Mapping[str, Any]
    values: dict[str, Any] = field(default_factory=dict)


def _nothing(*_: Any) -> Any:
    return None


def _no_steps(*_: Any) -> list[Step]:
    return []


@dataclass(frozen=True)
class Kind:
    """One resource kind; see the module docstring. Defaults: wants nothing, reads nothing, does nothing."""

    name: str
    want: Callable[[Any], Any] = _nothing
    read: Callable[[Any, Scope], Any] = _nothing
    converge: Callable[[Any, Any, Context], Sequence[Step]] = _no_steps
    remove: Callable[[Any, Context], Sequence[Step]] = _no_steps
    #: Removal runs kinds by this rank: 10 stop serving, 20-29 detach, 30 identity, 40 revisions, 50+ data.
    removal_rank: int = 100


def wants(kinds: Iterable[Kind], inputs: Any) -> dict[str, Any]:
    """Every kind's desired value for ``inputs``."""
    return {kind.name: kind.want(inputs) for kind in kinds}


def plan(kinds: Sequence[Kind], desired: Mapping[str, Any], observed: Mapping[str, Any], scope: Scope) -> Plan:
    """Steps that converge ``observed`` to ``desired``, kind by kind in order (pure)."""
    ctx = Context(scope, observed)
    steps: list[Step] = []
    for kind in kinds:
        steps += kind.converge(desired.get(kind.name), observed.get(kind.name), ctx)
    return Plan(scope.name, tuple(steps), dict(ctx.values))


def plan_removal(kinds: Sequence[Kind], observed: Mapping[str, Any], scope: Scope) -> Plan:
    """Steps that remove what ``observed`` holds, kind by kind by ``removal_rank`` (pure)."""
    ctx = Context(scope, observed)
    steps: list[Step] = []
    for kind in sorted(kinds, key=lambda k: k.removal_rank):
        steps += kind.remove(observed.get(kind.name), ctx)
    return Plan(scope.name, tuple(steps), dict(ctx.values))
