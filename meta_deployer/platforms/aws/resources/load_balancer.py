"""The optional gRPC target group and its listener rule (only with ``META_DEPLOYER_LB_LISTENER_ARN``).

Publishes ``target_group`` (its ARN, an Output of its creation, or None) for the ECS service.
A new rule takes the lowest priority free on the listener, read in the observe step: ELBv2
priorities are unique per listener and range over 1-50000
(https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateRule.html), so a
priority derived from a hash of the name could collide with another rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.common import GRPC_PORT, PlanError, RepoInputs, cloud_map_host, repo_tags, tag_list
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Output, Scope

#: ELBv2 listener rule priorities: unique per listener, 1..50000.
MIN_PRIORITY = 1
MAX_PRIORITY = 50_000


@dataclass(frozen=True)
class TargetGroup:
    """The gRPC target group and the listener rule forwarding the repo's host to it."""

    name: str
    vpc_id: str
    listener_arn: str
    host: str
    tags: dict[str, str]


def allocate_priority(taken: Iterable[int]) -> int:
    """The lowest listener rule priority not in ``taken`` (1..50000)."""
    used = set(taken)
    for priority in range(MIN_PRIORITY, MAX_PRIORITY + 1):
        if priority not in used:
            return priority
    raise PlanError(f"the listener has no free rule priority left ({MIN_PRIORITY}-{MAX_PRIORITY} all taken)")


def want(inputs: RepoInputs) -> TargetGroup | None:
    settings = inputs.settings
    if not settings.lb_listener_arn:
        return None
    if not settings.vpc_id:
        raise PlanError("META_DEPLOYER_VPC_ID must be set when META_DEPLOYER_LB_LISTENER_ARN is (the target group lives in it)")
    return TargetGroup(
        naming.target_group(inputs.name), settings.vpc_id, settings.lb_listener_arn,
        cloud_map_host(inputs.name, settings.namespace), repo_tags(inputs.name),
    )


def read(gw: Any, scope: Scope) -> dict[str, Any] | None:
    listener = scope.settings.lb_listener_arn
    if not (listener or scope.removal):
        return None
    target_group = gw.find_target_group(naming.target_group(scope.name))
    rules = gw.listener_rules(listener) if listener else []
    arn = (target_group or {}).get("TargetGroupArn")
    rule = next((r for r in rules if arn and any(a.get("TargetGroupArn") == arn for a in r.get("Actions", []))), None)
    taken = tuple(int(r["Priority"]) for r in rules if str(r.get("Priority", "")).isdigit())
    return {"target_group": target_group, "rule": rule, "priorities": taken}


def converge(want: TargetGroup | None, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    if want is None:
        ctx.values["target_group"] = None
        return []
    have = have or {}
    steps = []
    if have.get("target_group") is None:
        steps.append(Call(
            "target_group.create", "elbv2", "CreateTargetGroup",
            {
                "Name": want.name, "Protocol": "HTTP", "ProtocolVersion": "GRPC", "Port": GRPC_PORT,
                "VpcId": want.vpc_id, "TargetType": "ip", "HealthCheckEnabled": True, "HealthCheckProtocol": "HTTP",
                "HealthCheckPath": "/grpc.health.v1.Health/Check", "Matcher": {"GrpcCode": "0"},
                "Tags": tag_list(want.tags),
            },
            f"create gRPC target group {want.name} (port {GRPC_PORT})", f"target group {want.name}",
        ))
        target_group: str | Output = Output("target_group.create", "TargetGroups.0.TargetGroupArn")
    else:
        target_group = have["target_group"]["TargetGroupArn"]
    ctx.values["target_group"] = target_group
    if have.get("rule") is None:
        priority = allocate_priority(have.get("priorities", ()))
        steps.append(Call(
            "target_group.rule", "elbv2", "CreateRule",
            {
                "ListenerArn": want.listener_arn, "Priority": priority,
                "Conditions": [{"Field": "host-header", "HostHeaderConfig": {"Values": [want.host]}}],
                "Actions": [{"Type": "forward", "TargetGroupArn": target_group}], "Tags": tag_list(want.tags),
            },
            f"create listener rule host={want.host} priority={priority} -> {target_group}",
            f"listener rule for {want.host}",
        ))
    return steps


def remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    have = have or {}
    steps = []
    if have.get("rule") is not None:
        arn = have["rule"]["RuleArn"]
        steps.append(Call(
            "target_group.delete-rule", "elbv2", "DeleteRule", {"RuleArn": arn},
            f"delete listener rule {arn.rsplit('/', 1)[-1]}", f"listener rule {arn}", ok=("RuleNotFound",),
        ))
    if have.get("target_group") is not None:
        name, arn = have["target_group"]["TargetGroupName"], have["target_group"]["TargetGroupArn"]
        steps.append(Call(
            "target_group.delete", "elbv2", "DeleteTargetGroup", {"TargetGroupArn": arn},
            f"delete target group {name}", f"target group {name}", ok=("TargetGroupNotFound",),
            # ResourceInUse while the deleted service still drains from it.
            release_timeout_s=300.0,
        ))
    return steps


KIND = Kind("load_balancer", want, read, converge, remove, removal_rank=25)
