"""Task definition revisions: keep the newest for rollback, retire the rest (all of them on removal)."""

from __future__ import annotations

from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.common import RepoInputs, revision_of
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Scope

#: DeleteTaskDefinitions takes at most 10 revisions a call.
DELETE_BATCH = 10


def want(inputs: RepoInputs) -> int:
    return inputs.settings.keep_revisions


def read(gw: Any, scope: Scope) -> dict[str, tuple[str, ...]]:
    family = naming.task_family(scope.name)
    active = tuple(gw.task_definition_arns(family))
    inactive = tuple(gw.task_definition_arns(family, "INACTIVE")) if scope.purge else ()
    return {"active": active, "inactive": inactive}


def deregister(arn: str) -> Call:
    """Mark one revision INACTIVE (missing or already inactive: success)."""
    return Call(
        f"revisions.deregister.{arn}", "ecs", "DeregisterTaskDefinition", {"taskDefinition": arn},
        f"deregister task definition revision {revision_of(arn)}", f"task definition {arn}", ok=("ClientException",),
    )


def converge(keep_revisions: int, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    # Keep the newest revisions (the one serving included) for rollback; retire the rest.
    new = bool(ctx.values.get("new_revision"))
    keep = keep_revisions - (1 if new else 0)
    active = list((have or {}).get("active", ()))
    serving = None if new else ctx.values.get("task_definition")
    old = [a for a in (active[:-keep] if keep > 0 else active) if revision_of(a) != serving]
    return [deregister(arn) for arn in old]


def remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    have = have or {}
    if not ctx.scope.purge:
        return [deregister(arn) for arn in have.get("active", ())]
    every = list(have.get("active", ())) + list(have.get("inactive", ()))
    steps = [deregister(arn) for arn in have.get("active", ())]
    for start in range(0, len(every), DELETE_BATCH):
        batch = every[start : start + DELETE_BATCH]
        names = ", ".join(revision_of(a) for a in batch)
        steps.append(Call(
            f"revisions.delete.{start}", "ecs", "DeleteTaskDefinitions", {"taskDefinitions": batch},
            f"delete task definition revisions {names}", f"task definitions {', '.join(batch)}", ok=("ClientException",),
        ))
    return steps


KIND = Kind("revisions", want, read, converge, remove, removal_rank=40)
