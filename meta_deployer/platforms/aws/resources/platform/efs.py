"""The workspace file system: EFS, its access point and its mount targets (pure).

- **file system**: creation token ``dagster-platform-workspace`` (how it is found again), encrypted
  at rest, tagged; the plan waits until it is ``available``.
- **access point** ``/workspace``, every client acting as uid/gid :data:`POSIX_ID`; the directory is
  created on first use with mode 0755. Tasks mount through it with IAM authorization and transit
  encryption (``services.py``).
- **mount targets**: one per configured subnet, and at most one per availability zone, in the
  security group ``dagster-platform-efs`` (``network.py``).

AWS rules relied on (unit-tested in tests/test_platform_aws.py against our requests):

- "You can create one mount target in each Availability Zone in your VPC ... If you have multiple
  subnets in an Availability Zone, you create a mount target in one of the subnets" (EFS API
  reference, CreateMountTarget); :func:`mount_target_subnets` keeps the first subnet of each zone.
- "To create a mount target for a file system, the file system's lifecycle state must be
  available" (same page): the wait step before them.
- A file system with mount targets cannot be deleted (DeleteFileSystem: "You can't delete a file
  system that is in use ... you must first delete the mount targets"): a PURGE deletes the access
  point and mount targets, waits until none is left, then deletes the file system.

Publishes ``file_system_id`` and ``access_point_id`` (Outputs when created by this plan).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from meta_deployer.platforms.aws.common import tag_list
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Output, Scope
from meta_deployer.platforms.aws.resources.platform.common import (
    SG_EFS,
    WORKSPACE_MOUNT,
    WORKSPACE_NAME,
    PlatformInputs,
    platform_tags,
)

POSIX_ID = 1000
ROOT_PERMISSIONS = "0755"


@dataclass(frozen=True)
class Workspace:
    """The file system, its access point and the subnets of its mount targets."""

    creation_token: str
    tags: dict[str, str]
    path: str
    subnets: tuple[str, ...]


def want(inputs: PlatformInputs) -> Workspace:
    return Workspace(WORKSPACE_NAME, platform_tags("workspace"), WORKSPACE_MOUNT, inputs.settings.subnets)


def mount_target_subnets(subnets: Iterable[tuple[str, str]]) -> list[str]:
    """The subnets to hold a mount target: ``(subnet, zone)`` pairs in order, the first of each zone."""
    zones: dict[str, str] = {}
    for subnet, zone in subnets:
        zones.setdefault(zone, subnet)
    return list(zones.values())


def access_point_request(want: Workspace, file_system_id: Any) -> dict[str, Any]:
    """CreateAccessPoint parameters (without the client token)."""
    return {
        "FileSystemId": file_system_id,
        "PosixUser": {"Uid": POSIX_ID, "Gid": POSIX_ID},
        "RootDirectory": {
            "Path": want.path,
            "CreationInfo": {"OwnerUid": POSIX_ID, "OwnerGid": POSIX_ID, "Permissions": ROOT_PERMISSIONS},
        },
        "Tags": tag_list({**want.tags, "Name": want.creation_token}),
    }


def read(gw: Any, scope: Scope) -> dict[str, Any]:
    fs = gw.find_file_system(WORKSPACE_NAME)
    out: dict[str, Any] = {"file_system": fs, "access_point": None, "mount_targets": [], "subnets": []}
    if fs is not None:
        points = [p for p in gw.access_points(fs["FileSystemId"])
                  if any(t.get("Key") == "Name" and t.get("Value") == WORKSPACE_NAME for t in p.get("Tags", []))]
        out["access_point"] = points[0] if points else None
        out["mount_targets"] = gw.mount_targets(fs["FileSystemId"])
    if not scope.removal:
        out["subnets"] = [(s["SubnetId"], s["AvailabilityZone"]) for s in gw.subnets(list(scope.settings.subnets))]
    return out


def _available(response: Any) -> bool:
    systems = response.get("FileSystems") or []
    return bool(systems) and systems[0].get("LifeCycleState") == "available"


def converge(want: Workspace, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    have = have or {}
    fs = have.get("file_system")
    steps: list[Call] = []
    if fs is None:
        steps.append(Call(
            "efs.create", "efs", "CreateFileSystem",
            {"CreationToken": want.creation_token, "Encrypted": True, "PerformanceMode": "generalPurpose",
             "ThroughputMode": "elastic", "Tags": tag_list({**want.tags, "Name": want.creation_token})},
            f"create EFS file system {want.creation_token} (encrypted)", f"EFS file system {want.creation_token}",
        ))
        fs_id: Any = Output("efs.create", "FileSystemId")
        steps.append(Call(
            "efs.available", "efs", "DescribeFileSystems", {"FileSystemId": fs_id},
            f"wait until EFS file system {want.creation_token} is available", f"EFS file system {want.creation_token}",
            until=_available,
        ))
    else:
        fs_id = fs["FileSystemId"]
    ctx.values["file_system_id"] = fs_id
    point = have.get("access_point")
    request = access_point_request(want, fs_id)
    if point is not None and (point.get("PosixUser") != request["PosixUser"] or (point.get("RootDirectory") or {}).get("Path") != want.path):
        steps.append(Call(
            "efs.access-point.delete", "efs", "DeleteAccessPoint", {"AccessPointId": point["AccessPointId"]},
            f"delete access point {point['AccessPointId']} (its path or user changed)", f"access point {point['AccessPointId']}",
            ok=("AccessPointNotFound",),
        ))
        point = None
    if point is None:
        steps.append(Call(
            "efs.access-point", "efs", "CreateAccessPoint", {**request, "ClientToken": want.creation_token},
            f"create access point {want.path} on {fs_id} (uid/gid {POSIX_ID})", f"access point {want.path}",
        ))
        ctx.values["access_point_id"] = Output("efs.access-point", "AccessPointId")
    else:
        ctx.values["access_point_id"] = point["AccessPointId"]
    sg = ctx.values[f"sg:{SG_EFS}"]
    existing = {t.get("AvailabilityZoneName") or t.get("AvailabilityZoneId"): t for t in have.get("mount_targets", [])}
    zone_of = dict(have.get("subnets", []))
    for subnet in mount_target_subnets(have.get("subnets", [])):
        target = existing.get(zone_of[subnet])
        if target is None:
            steps.append(Call(
                f"efs.mount-target.{subnet}", "efs", "CreateMountTarget",
                {"FileSystemId": fs_id, "SubnetId": subnet, "SecurityGroups": [sg]},
                f"create mount target of {want.creation_token} in {subnet} ({zone_of[subnet]})", f"mount target in {subnet}",
            ))
        elif target.get("SecurityGroups") != [sg]:
            steps.append(Call(
                f"efs.mount-target.{subnet}.sg", "efs", "ModifyMountTargetSecurityGroups",
                {"MountTargetId": target["MountTargetId"], "SecurityGroups": [sg]},
                f"set the security group of mount target {target['MountTargetId']} to {SG_EFS}",
                f"mount target {target['MountTargetId']}",
            ))
    return steps


def remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    fs = (have or {}).get("file_system")
    if fs is None or not ctx.scope.purge:
        return []
    fs_id = fs["FileSystemId"]
    steps = []
    point = (have or {}).get("access_point")
    if point is not None:
        steps.append(Call(
            "efs.access-point.delete", "efs", "DeleteAccessPoint", {"AccessPointId": point["AccessPointId"]},
            f"delete access point {point['AccessPointId']} (PURGE)", f"access point {point['AccessPointId']}",
            ok=("AccessPointNotFound",),
        ))
    for target in (have or {}).get("mount_targets", []):
        steps.append(Call(
            f"efs.mount-target.{target['MountTargetId']}.delete", "efs", "DeleteMountTarget",
            {"MountTargetId": target["MountTargetId"]}, f"delete mount target {target['MountTargetId']} (PURGE)",
            f"mount target {target['MountTargetId']}", ok=("MountTargetNotFound",),
        ))
    if (have or {}).get("mount_targets"):
        steps.append(Call(
            "efs.mount-targets-gone", "efs", "DescribeMountTargets", {"FileSystemId": fs_id},
            f"wait until {fs_id} has no mount target", f"EFS file system {fs_id}",
            until=lambda r: not r.get("MountTargets"),
        ))
    steps.append(Call(
        "efs.delete", "efs", "DeleteFileSystem", {"FileSystemId": fs_id},
        f"delete EFS file system {fs_id} ({WORKSPACE_NAME}, PURGE: workspace.yaml goes with it)",
        f"EFS file system {fs_id}", ok=("FileSystemNotFound",),
    ))
    return steps


KIND = Kind("platform_workspace", want, read, converge, remove, removal_rank=60)
