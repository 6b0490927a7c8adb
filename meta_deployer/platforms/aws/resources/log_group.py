"""The repo's CloudWatch log group and its retention (removed only by a PURGE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.common import RepoInputs, repo_tags
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Scope


@dataclass(frozen=True)
class LogGroup:
    """The repo's log group and its retention."""

    name: str
    retention_days: int
    tags: dict[str, str]


def want(inputs: RepoInputs) -> LogGroup:
    return LogGroup(naming.log_group(inputs.name), inputs.settings.log_retention_days, repo_tags(inputs.name))


def read(gw: Any, scope: Scope) -> dict[str, Any] | None:
    if scope.removal and not scope.purge:
        return None
    return gw.get_log_group(naming.log_group(scope.name))


def _retention(name: str, days: int) -> Call:
    return Call(
        "log_group.retention", "logs", "PutRetentionPolicy", {"logGroupName": name, "retentionInDays": days},
        f"set retention of log group {name} to {days} days", f"log group {name}",
    )


def converge(want: LogGroup, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    # First in the list: tasks fail to start when their awslogs group is missing.
    if have is None:
        create = Call(
            "log_group.create", "logs", "CreateLogGroup", {"logGroupName": want.name, "tags": dict(want.tags)},
            f"create log group {want.name}", f"log group {want.name}", ok=("ResourceAlreadyExistsException",),
        )
        return [create, _retention(want.name, want.retention_days)]
    if have.get("retentionInDays") != want.retention_days:
        return [_retention(want.name, want.retention_days)]
    return []


def remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    if have is None or not ctx.scope.purge:
        return []
    name = have["logGroupName"]
    return [
        Call(
            "log_group.delete", "logs", "DeleteLogGroup", {"logGroupName": name},
            f"delete log group {name} (PURGE)", f"log group {name}", ok=("ResourceNotFoundException",),
        )
    ]


KIND = Kind("log_group", want, read, converge, remove, removal_rank=50)
