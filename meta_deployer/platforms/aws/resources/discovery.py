"""The repo's Cloud Map service: the stable DNS name ``<name>-service.<namespace>`` (A record, low TTL).

Publishes ``registry`` (the service's ARN, or an Output of its creation) for the ECS service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.common import PlanError, RepoInputs, repo_tags, tag_list
from meta_deployer.platforms.aws.engine import Call, Context, IdempotencyToken, Kind, Output, Scope

#: Cloud Map A-record TTL: low, because the stable name can serve stale answers during a rollout.
DNS_TTL_S = 10


@dataclass(frozen=True)
class Discovery:
    """The Cloud Map service giving the stable DNS name."""

    name: str
    namespace: str
    ttl: int
    tags: dict[str, str]


def want(inputs: RepoInputs) -> Discovery:
    return Discovery(naming.cloud_map_service(inputs.name), inputs.settings.namespace, DNS_TTL_S, repo_tags(inputs.name))


def read(gw: Any, scope: Scope) -> dict[str, Any]:
    ns = gw.find_namespace(scope.settings.namespace)
    found = gw.find_discovery_service(ns["Id"], naming.cloud_map_service(scope.name)) if ns else None
    return {"namespace_id": ns["Id"] if ns else None, "service": found}


def converge(want: Discovery, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    have = have or {}
    if have.get("namespace_id") is None:
        raise PlanError(
            f"Cloud Map namespace {want.namespace!r} does not exist; run 'make bootstrap' "
            "(or set META_DEPLOYER_NAMESPACE to an existing private DNS namespace)"
        )
    resource = f"Cloud Map service {want.name}"
    found = have.get("service")
    if found is None:
        ctx.values["registry"] = Output("discovery.create", "Service.Arn", f"Services[Name={want.name}].Arn")
        # ServiceAlreadyExists (another deployer won a race): read the existing one instead.
        lookup = Call(
            "discovery.create", "servicediscovery", "ListServices",
            {"Filters": [{"Name": "NAMESPACE_ID", "Values": [have["namespace_id"]], "Condition": "EQ"}]},
            f"find Cloud Map service {want.name}", resource,
        )
        return [Call(
            "discovery.create", "servicediscovery", "CreateService",
            {
                "Name": want.name, "NamespaceId": have["namespace_id"],
                # A fresh token per call (botocore's retries resend the same one): a name-derived
                # token would make a re-create after a delete return the deleted service.
                "CreatorRequestId": IdempotencyToken(),
                "DnsConfig": {"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": want.ttl}]},
                "HealthCheckCustomConfig": {"FailureThreshold": 1},
                "Tags": tag_list(want.tags),
            },
            f"create Cloud Map service {want.name}.{want.namespace} (A record, TTL {want.ttl}s)", resource,
            ok=("ServiceAlreadyExists",), fallback=lookup,
        )]
    ctx.values["registry"] = found["Arn"]
    records = (found.get("DnsConfig") or {}).get("DnsRecords") or []
    if [r.get("TTL") for r in records] != [want.ttl]:
        return [Call(
            "discovery.ttl", "servicediscovery", "UpdateService",
            {"Id": found["Id"], "Service": {"DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": want.ttl}]}}},
            f"set TTL of Cloud Map service {want.name} to {want.ttl}s", resource,
        )]
    return []


def remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    found = (have or {}).get("service")
    if found is None:
        return []
    return [Call(
        "discovery.delete", "servicediscovery", "DeleteService", {"Id": found["Id"]},
        f"delete Cloud Map service {found['Name']}", f"Cloud Map service {found['Name']}", ok=("ServiceNotFound",),
        # Cloud Map says ResourceInUse until ECS has deregistered the stopped tasks.
        release_timeout_s=ctx.scope.settings.stability_timeout_s,
    )]


KIND = Kind("discovery", want, read, converge, remove, removal_rank=20)
