"""The platform's security groups and their ingress rules, kept to exactly what is listed (pure).

- ``dagster-platform-tasks`` (on all three services): TCP 4266 from itself (webserver and daemon
  reach the deployer's gRPC server);
- ``dagster-platform-efs`` (on the mount targets): TCP 2049 (NFS) from ``dagster-platform-tasks``
  only (EFS user guide, "Using VPC security groups": the mount target's group must allow inbound
  NFS on port 2049 from the clients' group);
- ``dagster-platform-webserver`` (on the webserver): TCP 3000 from the load balancer's security
  groups when ``META_DEPLOYER_LB_LISTENER_ARN`` is set, else only from
  ``META_DEPLOYER_PLATFORM_ALLOWED_SECURITY_GROUPS``; with neither, from nobody.

A rule found that is not listed (another port, a CIDR range) is revoked: "only" is the point.
Publishes ``sg:<name>`` (the group id, or an Output of its creation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meta_deployer.platforms.aws.common import PlanError, tag_list
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Output, Scope
from meta_deployer.platforms.aws.resources.platform.common import (
    DEPLOYER_PORT,
    NFS_PORT,
    SG_EFS,
    SG_TASKS,
    SG_WEBSERVER,
    WEBSERVER_PORT,
    PlatformInputs,
    platform_tags,
)


@dataclass(frozen=True)
class Ingress:
    """TCP ``port`` from members of security group ``source`` (an id, or the name of one of ours)."""

    port: int
    source: str


@dataclass(frozen=True)
class SecurityGroup:
    """A security group of ours and the only ingress rules it keeps."""

    name: str
    vpc_id: str
    description: str
    ingress: tuple[Ingress, ...]
    tags: dict[str, str]


OURS = (SG_TASKS, SG_EFS, SG_WEBSERVER)


def rules_of(group: dict[str, Any]) -> set[tuple[int, str]] | None:
    """``(port, source group id)`` of each ingress rule; None when a rule is anything else (CIDR, ranges)."""
    found: set[tuple[int, str]] = set()
    for perm in group.get("IpPermissions") or []:
        if perm.get("IpProtocol") != "tcp" or perm.get("FromPort") != perm.get("ToPort") or perm.get("IpRanges") or perm.get("Ipv6Ranges") or perm.get("PrefixListIds"):
            return None
        for pair in perm.get("UserIdGroupPairs") or []:
            found.add((int(perm["FromPort"]), pair["GroupId"]))
    return found


def _want(name: str, description: str, ingress: tuple[Ingress, ...], inputs: PlatformInputs) -> SecurityGroup:
    if not inputs.settings.vpc_id:
        raise PlanError("META_DEPLOYER_VPC_ID must be set for make platform (its security groups live in the VPC)")
    return SecurityGroup(name, inputs.settings.vpc_id, description, ingress, platform_tags("network"))


def want_tasks(inputs: PlatformInputs) -> SecurityGroup:
    return _want(SG_TASKS, "meta_deployer platform tasks", (Ingress(DEPLOYER_PORT, SG_TASKS),), inputs)


def want_efs(inputs: PlatformInputs) -> SecurityGroup:
    return _want(SG_EFS, "meta_deployer workspace EFS mount targets", (Ingress(NFS_PORT, SG_TASKS),), inputs)


def want_webserver(inputs: PlatformInputs) -> SecurityGroup:
    # With a load balancer the sources are its own groups, read in the observe step (``lb_groups``).
    sources = () if inputs.settings.lb_listener_arn else inputs.platform.allowed_security_groups
    return _want(SG_WEBSERVER, "meta_deployer platform webserver", tuple(Ingress(WEBSERVER_PORT, s) for s in sources), inputs)


def _reader(name: str):
    def read(gw: Any, scope: Scope) -> dict[str, Any] | None:
        vpc = scope.settings.vpc_id
        if not vpc:
            return None
        found = gw.find_security_group(vpc, name)
        out: dict[str, Any] = {"group": found}
        if name == SG_WEBSERVER and scope.settings.lb_listener_arn and not scope.removal:
            listener = gw.listener(scope.settings.lb_listener_arn)
            out["lb_groups"] = tuple(sorted((listener or {}).get("SecurityGroups", [])))
        return out
    return read


def _source_id(source: str, ctx: Context) -> Any:
    return ctx.values[f"sg:{source}"] if source in OURS else source


def _converge(want: SecurityGroup, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    have = have or {}
    group = have.get("group")
    resource = f"security group {want.name} in {want.vpc_id}"
    steps: list[Call] = []
    if group is None:
        steps.append(Call(
            f"sg.{want.name}.create", "ec2", "CreateSecurityGroup",
            {"GroupName": want.name, "Description": want.description, "VpcId": want.vpc_id,
             "TagSpecifications": [{"ResourceType": "security-group", "Tags": tag_list({**want.tags, "Name": want.name})}]},
            f"create security group {want.name} in {want.vpc_id}", resource,
        ))
        group_id: Any = Output(f"sg.{want.name}.create", "GroupId")
    else:
        group_id = group["GroupId"]
    ctx.values[f"sg:{want.name}"] = group_id
    ingress = list(want.ingress) + [Ingress(WEBSERVER_PORT, g) for g in have.get("lb_groups", ())]
    desired = {(i.port, _source_id(i.source, ctx)) for i in ingress}
    current = rules_of(group) if group is not None else set()
    if current is None:  # something we never add (a CIDR range...): revoke every rule, then add ours
        steps.append(Call(
            f"sg.{want.name}.revoke-all", "ec2", "RevokeSecurityGroupIngress",
            {"GroupId": group_id, "IpPermissions": group["IpPermissions"]},
            f"revoke every ingress rule of {want.name} (it had rules that are not ours)", resource,
        ))
        current = set()
    extra = sorted(r for r in current if r not in desired)
    missing = sorted((r for r in desired if r not in current), key=str)
    if extra:
        steps.append(Call(
            f"sg.{want.name}.revoke", "ec2", "RevokeSecurityGroupIngress",
            {"GroupId": group_id, "IpPermissions": [_permission(p, s) for p, s in extra]},
            f"revoke ingress of {want.name}: {', '.join(f'tcp {p} from {s}' for p, s in extra)}", resource,
        ))
    if missing:
        steps.append(Call(
            f"sg.{want.name}.authorize", "ec2", "AuthorizeSecurityGroupIngress",
            {"GroupId": group_id, "IpPermissions": [_permission(p, s) for p, s in missing]},
            f"allow into {want.name}: {', '.join(f'tcp {p} from {s}' for p, s in missing)}", resource,
            ok=("InvalidPermission.Duplicate",),
        ))
    return steps


def _permission(port: int, source: Any) -> dict[str, Any]:
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "UserIdGroupPairs": [{"GroupId": source}]}


TASKS = Kind("platform_sg_tasks", want_tasks, _reader(SG_TASKS), _converge)
EFS = Kind("platform_sg_efs", want_efs, _reader(SG_EFS), _converge)
WEBSERVER = Kind("platform_sg_webserver", want_webserver, _reader(SG_WEBSERVER), _converge)
KINDS = (TASKS, EFS, WEBSERVER)
