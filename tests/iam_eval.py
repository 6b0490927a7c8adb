"""A small evaluator of the IAM policies we generate, conditions included (moto evaluates none).

It implements the part of AWS's policy evaluation logic our documents use
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
default deny; an explicit Deny wins; Allow when Action and Resource match (``*`` and ``?``
wildcards, actions case-insensitive) and every condition holds; ``StringLike`` /
``StringEquals`` on a key the request does not carry do not hold. S3 calls map to actions and
resources as in https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
(ListObjects/ListObjectsV2 are s3:ListBucket on the bucket, with the ``s3:prefix`` key).
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
