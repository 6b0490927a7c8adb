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


def deregister(arn: str, why: str = "", best_effort: bool = False) -> Call:
    """Mark one revision INACTIVE (missing or already inactive: success)."""
    return Call(
        f"revisions.deregister.{arn}", "ecs", "DeregisterTaskDefinition", {"taskDefinition": arn},
        f"deregister task definition revision {revision_of(arn)}{why}", f"task definition {arn}", ok=("ClientException",),
        best_effort=best_effort,
    )


def _number(arn: str) -> int:
    return int(arn.rsplit(":", 1)[-1])


def converge(keep_revisions: int, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    """Runs after the rollout is stable (best effort: the new version already serves).

    Keeps the newest ``keep_revisions`` (the one serving included) for rollback and retires
    the rest. Also retires every ACTIVE revision newer than the one that served when the plan
    was made, except the one this plan deploys: a deploy killed between its register and its
    rollout leaves such a revision, and it must not stay the family's latest ACTIVE one,
    which is what runs use (``DAGSTER_CONTAINER_CONTEXT`` names the family).
    """
    new = bool(ctx.values.get("new_revision"))
    keep = keep_revisions - (1 if new else 0)
    active = list((have or {}).get("active", ()))
    deploying = None if new else ctx.values.get("task_definition")
    served = (ctx.observed.get("service") or {}).get("taskDefinition")
    old = [a for a in (active[:-keep] if keep > 0 else active) if revision_of(a) != deploying]
    abandoned = [
        a for a in active
        if served and _number(a) > _number(served) and revision_of(a) != deploying and a not in old
    ]
    return [deregister(arn, best_effort=True) for arn in old] + [
        deregister(arn, " (never served: left by a failed or killed deploy)", best_effort=True) for arn in abandoned
    ]


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
