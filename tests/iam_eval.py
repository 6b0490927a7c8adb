"""A small evaluator of the IAM policies we generate, conditions included (moto evaluates none).

It implements the part of AWS's policy evaluation logic our documents use
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
default deny; an explicit Deny wins; Allow when Action and Resource match (``*`` and ``?``
wildcards, actions case-insensitive) and every condition holds; ``StringLike`` /
``StringEquals`` on a key the request does not carry do not hold. S3 calls map to actions and
resources as in https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
(ListObjects/ListObjectsV2 are s3:ListBucket on the bucket, with the ``s3:prefix`` key).

A condition on a key the request never carries never holds, so a policy that conditions an
action on a key AWS does not send for that action denies it on AWS while this evaluator (given
any context a test invents) would allow it. :data:`CONDITION_KEYS` is the rule that closes the
gap: the condition keys AWS sends for each action our policies condition, and :func:`allowed`
refuses a context carrying any other key.
"""

from __future__ import annotations

import fnmatch
from typing import Any

S3_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
}


#: The condition keys each action carries (action-specific keys, plus ``aws:ResourceTag/*`` where the
#: action's resource type supports it), from the Service Authorization Reference, "Actions,
#: resources, and condition keys for <service>"
#: (https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html):
#: - Amazon ECS: RunTask carries ecs:cluster, aws:RequestTag, aws:ResourceTag (and others we do not
#:   use); ListTasks and StopTask carry ecs:cluster and aws:ResourceTag.
#: - Amazon EFS: ClientMount and ClientWrite carry elasticfilesystem:AccessPointArn and
#:   elasticfilesystem:AccessedViaMountTarget; their resource type, file-system, carries aws:ResourceTag.
#: - AWS Cloud Map: CreateService carries servicediscovery:NamespaceArn, aws:RequestTag and aws:TagKeys;
#:   TagResource carries aws:RequestTag and aws:TagKeys; DeleteService, GetService and UpdateService
#:   carry no namespace key at all (servicediscovery:NamespaceName is carried only by
#:   DiscoverInstances and DiscoverInstancesRevision); their resource type, service, carries
#:   aws:ResourceTag ("How AWS Cloud Map works with IAM": ABAC, yes).
#: - IAM: PassRole carries iam:PassedToService (IAM user guide, "Granting a user permissions to pass a role").
#: - Amazon S3: ListBucket carries s3:prefix.
#: Keys are matched as patterns (``aws:ResourceTag/*`` stands for every tag key).
CONDITION_KEYS: dict[str, tuple[str, ...]] = {
    "ecs:RunTask": ("ecs:cluster", "aws:RequestTag/*", "aws:ResourceTag/*", "aws:TagKeys"),
    "ecs:ListTasks": ("ecs:cluster", "aws:ResourceTag/*"),
    "ecs:StopTask": ("ecs:cluster", "aws:ResourceTag/*"),
    "elasticfilesystem:ClientMount": ("elasticfilesystem:AccessPointArn", "elasticfilesystem:AccessedViaMountTarget", "aws:ResourceTag/*"),
    "elasticfilesystem:ClientWrite": ("elasticfilesystem:AccessPointArn", "elasticfilesystem:AccessedViaMountTarget", "aws:ResourceTag/*"),
    "servicediscovery:CreateService": ("servicediscovery:NamespaceArn", "aws:RequestTag/*", "aws:TagKeys"),
    "servicediscovery:TagResource": ("aws:RequestTag/*", "aws:TagKeys", "aws:ResourceTag/*"),
    "servicediscovery:DeleteService": ("aws:ResourceTag/*",),
    "servicediscovery:GetService": ("aws:ResourceTag/*",),
    "servicediscovery:UpdateService": ("aws:ResourceTag/*",),
    "iam:PassRole": ("iam:PassedToService", "iam:AssociatedResourceArn"),
    "s3:ListBucket": ("s3:prefix", "s3:delimiter", "s3:max-keys"),
}


def carries(action: str, key: str) -> bool:
    """Whether AWS sends condition key ``key`` with ``action`` (KeyError: the action is not written down)."""
    return any(_match(pattern, key, case=False) for pattern in CONDITION_KEYS[action])


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _match(pattern: str, value: str, case: bool = True) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def _conditions_hold(conditions: dict, context: dict[str, str]) -> bool:
    for operator, tests in conditions.items():
        for key, patterns in tests.items():
            if key not in context:
                return False
            value = context[key]
            if operator == "StringLike":
                ok = any(_match(p, value) for p in _list(patterns))
            elif operator in ("StringEquals", "ArnEquals"):
                ok = value in _list(patterns)
            elif operator == "ArnLike":
                ok = any(_match(p, value) for p in _list(patterns))
            else:
                raise NotImplementedError(f"condition operator {operator}")
            if not ok:
                return False
    return True


def allowed(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """Whether ``policy`` allows ``action`` on ``resource`` with request ``context``."""
    context = context or {}
    for key in context:
        if action in CONDITION_KEYS and not carries(action, key):
            raise AssertionError(f"AWS never sends {key!r} with {action}: a test may not invent it")
    verdict = False
    for statement in policy["Statement"]:
        if not any(_match(a, action, case=False) for a in _list(statement["Action"])):
            continue
        if not any(_match(r, resource) for r in _list(statement["Resource"])):
            continue
        if not _conditions_hold(statement.get("Condition", {}), context):
            continue
        if statement["Effect"] == "Deny":
            return False
        verdict = True
    return verdict


def s3_call_allowed(policy: dict, bucket: str, operation: str, key_or_prefix: str, partition: str = "aws") -> bool:
    """Whether an S3 API call (as recorded by the tests' ``s3_calls``) is allowed by ``policy``."""
    action = S3_ACTIONS[operation]
    if action == "s3:ListBucket":
        return allowed(policy, action, f"arn:{partition}:s3:::{bucket}", {"s3:prefix": key_or_prefix})
    return allowed(policy, action, f"arn:{partition}:s3:::{bucket}/{key_or_prefix}")
