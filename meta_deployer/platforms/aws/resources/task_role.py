"""The repo's IAM task role: trusted by ECS tasks only, with one inline policy on its S3 prefix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.common import (
    POLICY_VERSION,
    SHARED_PREFIX,
    TASK_POLICY_NAME,
    ECS_TASKS_PRINCIPAL,
    RepoInputs,
    canonical_json,
    repo_tags,
    tag_list,
    trust_policy,
)
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Scope

DESCRIPTION = "meta_deployer task role: this repo's S3 prefix only"


def task_role_policy(bucket: str, name: str, read: Sequence[str] = (), partition: str = "aws") -> dict[str, Any]:
    """The task role's only inline policy: its own prefix read-write, shared and granted prefixes read-only.

    A grant (``access.read``) reaches the other repo's ``assets/`` only, never its code archives
    (``code/``), op outputs or logs. Every prefix ends with ``/`` so that ``repos/a/`` never matches
    ``repos/a-evil/``.
    """
    own = f"{naming.s3_prefix(name)}/"
    readable = [SHARED_PREFIX] + [f"{naming.s3_prefix(other)}/assets/" for other in sorted(set(read)) if other != name]
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "OwnPrefixReadWrite",
                "Effect": "Allow",
                "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                "Resource": [f"{bucket_arn}/{own}*"],
            },
            {
                "Sid": "SharedAndGrantedPrefixesReadOnly",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"{bucket_arn}/{p}*" for p in readable],
            },
            {
                "Sid": "ListOnlyReadablePrefixes",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [bucket_arn],
                "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in [own, *readable]]}},
            },
        ],
    }


@dataclass(frozen=True)
class Role:
    """An IAM role: trust policy and one inline policy."""

    name: str
    trust_policy: dict[str, Any]
    policy_name: str
    policy: dict[str, Any]
    tags: dict[str, str]
    description: str = DESCRIPTION


def want(inputs: RepoInputs) -> Role:
    s = inputs.spec
    return Role(
        name=naming.task_role(s.name),
        trust_policy=trust_policy(),
        policy_name=TASK_POLICY_NAME,
        policy=task_role_policy(inputs.settings.bucket, s.name, s.access.read, inputs.ctx.partition),
        tags=repo_tags(s.name),
    )


def read_role(gw: Any, role_name: str, policy_name: str, removal: bool) -> dict[str, Any] | None:
    """The role, and its policy (for a deploy) or every inline policy name (for a removal)."""
    found = gw.get_role(role_name)
    if found is None:
        return None
    if removal:
        return {"role": found, "policies": tuple(gw.list_role_policies(role_name))}
    return {"role": found, "policy": gw.get_role_policy(role_name, policy_name)}


def read(gw: Any, scope: Scope) -> dict[str, Any] | None:
    return read_role(gw, naming.task_role(scope.name), TASK_POLICY_NAME, scope.removal)


def converge(want: Role, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    resource = f"IAM role {want.name}"
    steps = []
    if have is None:
        steps.append(Call(
            f"{want.name}.create", "iam", "CreateRole",
            {"RoleName": want.name, "AssumeRolePolicyDocument": canonical_json(want.trust_policy),
             "Tags": tag_list(want.tags), "Description": want.description},
            f"create IAM role {want.name} (trusted by {ECS_TASKS_PRINCIPAL})", resource, ok=("EntityAlreadyExists",),
        ))
    elif have["role"].get("AssumeRolePolicyDocument") != want.trust_policy:
        steps.append(Call(
            f"{want.name}.trust", "iam", "UpdateAssumeRolePolicy",
            {"RoleName": want.name, "PolicyDocument": canonical_json(want.trust_policy)},
            f"update trust policy of IAM role {want.name}", resource,
        ))
    if have is None or have.get("policy") != want.policy:
        steps.append(Call(
            f"{want.name}.policy", "iam", "PutRolePolicy",
            {"RoleName": want.name, "PolicyName": want.policy_name, "PolicyDocument": canonical_json(want.policy)},
            f"put inline policy {want.policy_name} on IAM role {want.name}",
            f"inline policy {want.policy_name} of IAM role {want.name}",
        ))
    return steps


def remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    if have is None:
        return []
    role = have["role"]["RoleName"]
    steps = [
        Call(
            f"{role}.delete-policy.{policy}", "iam", "DeleteRolePolicy", {"RoleName": role, "PolicyName": policy},
            f"delete inline policy {policy} of IAM role {role}", f"inline policy {policy} of IAM role {role}",
            ok=("NoSuchEntity",),
        )
        for policy in have.get("policies", ())
    ]
    steps.append(Call(
        f"{role}.delete", "iam", "DeleteRole", {"RoleName": role}, f"delete IAM role {role}", f"IAM role {role}",
        ok=("NoSuchEntity",),
    ))
    return steps


KIND = Kind("task_role", want, read, converge, remove, removal_rank=30)
