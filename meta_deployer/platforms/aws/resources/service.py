"""The repo's ECS service, and the wait for a stable rollout.

Uses what earlier kinds published: ``task_definition``, ``registry`` and
``target_group``. Publishes ``service_changed`` and ``service_arn`` for the
deployment record. An UpdateService sends only the fields that differ: every
field it sends may start a new deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.common import (
    CONTAINER_NAME,
    GRPC_PORT,
    RepoInputs,
    repo_tags,
    revision_of,
    service_is_stable,
    tag_list,
)
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Output, Scope, Step, WaitStable

DEPLOYMENT_CONFIGURATION: dict[str, Any] = {
    "minimumHealthyPercent": 100,
    "maximumPercent": 200,
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
}
BOOTSTRAP_HINT = "Run 'make bootstrap' to create the cluster, or set META_DEPLOYER_ECS_CLUSTER"


@dataclass(frozen=True)
class Service:
    """The ECS service's settings (the task definition is its own kind)."""

    cluster: str
    name: str
    desired_count: int
    health_check_grace_s: int
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    tags: dict[str, str]
    log_group: str
    stability_timeout_s: float


def want(inputs: RepoInputs) -> Service:
    s = inputs.settings
    return Service(
        cluster=s.cluster, name=naming.ecs_service(inputs.name), desired_count=s.desired_count,
        health_check_grace_s=s.health_check_grace_s, subnets=s.subnets, security_groups=s.security_groups,
        tags=repo_tags(inputs.name), log_group=naming.log_group(inputs.name), stability_timeout_s=s.stability_timeout_s,
    )


def read(gw: Any, scope: Scope) -> dict[str, Any] | None:
    return gw.get_service(scope.settings.cluster, naming.ecs_service(scope.name))


def _projection_differs(desired: Any, live: Any) -> bool:
    """True when ``live`` differs from ``desired`` on a key ``desired`` sets (live may add keys)."""
    if isinstance(desired, Mapping):
        return not isinstance(live, Mapping) or any(_projection_differs(v, live.get(k)) for k, v in desired.items())
    return desired != live


def service_differences(
    desired: Service, live: Mapping[str, Any], task_definition: str, registry_arn: str, target_group_arn: str | None,
) -> list[tuple[str, str]]:
    """``(UpdateService field, why)`` for each field of the live service to change (empty: leave it).

    Values not known yet (an :class:`Output` rendered as text) never match a live
    ARN, so a resource created in the same plan always updates the service.
    """
    diffs = []
    live_td = revision_of(live.get("taskDefinition") or "-")
    if live_td != revision_of(task_definition):
        diffs.append(("taskDefinition", f"task definition {live_td} -> {revision_of(task_definition)}"))
    if live.get("desiredCount") != desired.desired_count:
        diffs.append(("desiredCount", f"desired count {live.get('desiredCount')} -> {desired.desired_count}"))
    if _projection_differs(DEPLOYMENT_CONFIGURATION, live.get("deploymentConfiguration") or {}):
        diffs.append(("deploymentConfiguration", "deployment configuration"))
    if (live.get("healthCheckGracePeriodSeconds") or 0) != desired.health_check_grace_s:
        diffs.append(("healthCheckGracePeriodSeconds", "health check grace period"))
    net = (live.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
    if (
        sorted(net.get("subnets") or []) != list(desired.subnets)
        or sorted(net.get("securityGroups") or []) != list(desired.security_groups)
        or net.get("assignPublicIp", "DISABLED") != "DISABLED"
    ):
        diffs.append(("networkConfiguration", "network configuration"))
    if [r.get("registryArn") for r in live.get("serviceRegistries") or []] != [registry_arn]:
        diffs.append(("serviceRegistries", "Cloud Map registration"))
    balancers = [lb.get("targetGroupArn") for lb in live.get("loadBalancers") or []]
    if balancers != ([target_group_arn] if target_group_arn else []):
        diffs.append(("loadBalancers", "load balancer"))
    return diffs


def _request(want: Service, task_definition: Any, registry: Any, target_group: Any) -> dict[str, Any]:
    return {
        "cluster": want.cluster,
        "desiredCount": want.desired_count,
        "deploymentConfiguration": DEPLOYMENT_CONFIGURATION,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(want.subnets), "securityGroups": list(want.security_groups), "assignPublicIp": "DISABLED",
            }
        },
        "healthCheckGracePeriodSeconds": want.health_check_grace_s,
        "taskDefinition": task_definition,
        "serviceRegistries": [{"registryArn": registry}],
        # An empty list detaches a load balancer whose setting was removed.
        "loadBalancers": [{"targetGroupArn": target_group, "containerName": CONTAINER_NAME, "containerPort": GRPC_PORT}]
        if target_group is not None else [],
    }


def converge_created_settings(response: Mapping[str, Any], sent: Mapping[str, Any]) -> Call | None:
    """Some ECS implementations (moto) drop deploymentConfiguration and the grace period on create;
    converge them now rather than on the next deploy."""
    service = response.get("service") or {}
    if (
        service.get("deploymentConfiguration", {}).get("deploymentCircuitBreaker") == sent["deploymentConfiguration"]["deploymentCircuitBreaker"]
        and service.get("healthCheckGracePeriodSeconds") == sent["healthCheckGracePeriodSeconds"]
    ):
        return None
    fields = {k: sent[k] for k in ("deploymentConfiguration", "healthCheckGracePeriodSeconds")}
    return Call(
        "service.fix-created", "ecs", "UpdateService", {"cluster": sent["cluster"], "service": sent["serviceName"], **fields},
        f"set the deployment configuration of ECS service {sent['serviceName']}",
        f"ECS service {sent['serviceName']} in cluster {sent['cluster']}",
    )


def converge(want: Service, have: dict[str, Any] | None, ctx: Context) -> list[Step]:
    td, registry, target_group = (ctx.values.get(k) for k in ("task_definition", "registry", "target_group"))
    request = _request(want, td, registry, target_group)
    resource = f"ECS service {want.name} in cluster {want.cluster}"
    steps: list[Step] = []
    if have is None:
        ctx.values["service_arn"] = Output("service.create", "service.serviceArn")
        steps.append(Call(
            "service.create", "ecs", "CreateService",
            {
                **request, "serviceName": want.name, "launchType": "FARGATE", "tags": tag_list(want.tags, "key", "value"),
                "propagateTags": "SERVICE", "enableECSManagedTags": True, "schedulingStrategy": "REPLICA",
            },
            f"create ECS service {want.name} in cluster {want.cluster} ({td})", resource,
            hints=(("ClusterNotFoundException", BOOTSTRAP_HINT),), follow_up=converge_created_settings,
        ))
    else:
        ctx.values["service_arn"] = have.get("serviceArn")
        diffs = service_differences(
            want, have, str(td), str(registry), None if target_group is None else str(target_group)
        )
        if diffs:
            steps.append(Call(
                "service.update", "ecs", "UpdateService",
                {"cluster": want.cluster, "service": want.name, **{field: request[field] for field, _ in diffs}},
                f"update ECS service {want.name} in cluster {want.cluster} ({'; '.join(why for _, why in diffs)})",
                resource,
            ))
    ctx.values["service_changed"] = bool(steps)
    if steps or not service_is_stable(have or {}):
        # What served stably before: a failed rollout of a new revision goes back to it.
        previous = revision_of(have["taskDefinition"]) if have and have.get("taskDefinition") and service_is_stable(have) else None
        steps.append(WaitStable(
            want.cluster, want.name, td, want.log_group, want.stability_timeout_s,
            retire_on_failure=isinstance(td, Output), previous=previous,
        ))
    return steps


def remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    if have is None:
        return []
    cluster, name = ctx.scope.settings.cluster, have["serviceName"]
    resource = f"ECS service {name} in cluster {cluster}"
    steps = []
    if have.get("desiredCount", 0) > 0:
        steps.append(Call(
            "service.scale-down", "ecs", "UpdateService", {"cluster": cluster, "service": name, "desiredCount": 0},
            f"scale ECS service {name} to 0", resource,
        ))
    steps.append(Call(
        "service.delete", "ecs", "DeleteService", {"cluster": cluster, "service": name},
        f"delete ECS service {name} from cluster {cluster}", resource,
        ok=("ServiceNotFoundException", "ServiceNotActiveException", "ClusterNotFoundException"),
    ))
    return steps


KIND = Kind("service", want, read, converge, remove, removal_rank=10)
