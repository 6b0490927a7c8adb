"""The shared pieces ``make bootstrap`` keeps (one kind each): the bucket and its layout, the temp/
lifecycle rule, the cluster, the Cloud Map namespace and the shared task execution role; with
``META_DEPLOYER_BUILDER=codebuild`` also the CodeBuild project, its role and log group
(``resources/codebuild.py``).

``SHARED_KINDS`` is their order; they run on the same engine and executor as a repo's kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meta_deployer.errors import AwsOperationError, SettingsError
from meta_deployer.platforms.aws.common import SHARED_PREFIX, tag_list, tags, trust_policy
from meta_deployer.platforms.aws.engine import Call, Context, IdempotencyToken, Kind, Scope
from meta_deployer.platforms.aws.resources import codebuild, task_role
from meta_deployer.platforms.aws.settings import DEFAULT_EXECUTION_ROLE_NAME, EcsSettings
from meta_deployer.settings import ImageSettings

#: Folder markers that make the bucket's layout visible.
BUCKET_LAYOUT = ("repos/", SHARED_PREFIX, "system/", "temp/")
TEMP_RULE_ID = "expire-temp"
#: The shared execution role's inline policy: what AmazonECSTaskExecutionRolePolicy grants, scoped
#: to our ECR repositories and log groups. It reads no secrets: repo tasks use their own execution
#: role (``resources/execution_role.py``), which reads only that repo's and the shared secrets.
EXECUTION_POLICY = "pull-images-write-logs"
#: Inline policies an older bootstrap put on the shared role; deleted when found (it read every
#: ``dagster/*`` secret).
RETIRED_EXECUTION_POLICIES = ("pull-images-write-logs-read-secrets",)
BOOTSTRAP_TAGS = tags({"meta-deployer:shared": "true"})


@dataclass(frozen=True)
class SharedInputs:
    """What the shared pieces derive from: the settings and the account."""

    settings: EcsSettings
    region: str
    account: str
    partition: str = "aws"
    #: The image settings: with ``META_DEPLOYER_BUILDER=codebuild`` bootstrap keeps the CodeBuild project.
    images: ImageSettings | None = None


def temp_lifecycle_rule(days: int) -> dict[str, Any]:
    """The lifecycle rule expiring ``temp/`` after ``days``."""
    return {"ID": TEMP_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": "temp/"}, "Expiration": {"Days": days}}


def execution_policy(partition: str, region: str, account: str) -> dict[str, Any]:
    """Pull ``dagster/*`` images and write ``/dagster/repos/*`` logs; no secrets."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
            {
                "Effect": "Allow",
                "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                "Resource": [f"arn:{partition}:ecr:{region}:{account}:repository/dagster/*"],
            },
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"arn:{partition}:logs:{region}:{account}:log-group:/dagster/repos/*"],
            },
        ],
    }


# -- the bucket --------------------------------------------------------------------------


def _create_bucket(want: SharedInputs, exists: bool, ctx: Context) -> list[Call]:
    bucket = want.settings.bucket
    if exists:
        return []
    params: dict[str, Any] = {"Bucket": bucket}
    if want.region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
        params["CreateBucketConfiguration"] = {"LocationConstraint": want.region}
    return [Call("bucket.create", "s3", "CreateBucket", params, f"create bucket s3://{bucket} ({want.region})",
                 f"S3 bucket {bucket}", ok=("BucketAlreadyOwnedByYou",))]


def _folders(want: SharedInputs, present: set[str], ctx: Context) -> list[Call]:
    bucket = want.settings.bucket
    return [
        Call(f"bucket.folder.{key}", "s3", "PutObject", {"Bucket": bucket, "Key": key, "Body": b""},
             f"create folder s3://{bucket}/{key}", f"s3://{bucket}/{key}")
        for key in BUCKET_LAYOUT if key not in present
    ]


def _lifecycle(want: SharedInputs, rules: list[dict[str, Any]], ctx: Context) -> list[Call]:
    bucket, days = want.settings.bucket, want.settings.temp_expiry_days
    current = next((r for r in rules if r.get("ID") == TEMP_RULE_ID), None)
    if current is not None and current.get("Expiration", {}).get("Days") == days and current.get("Status") == "Enabled":
        return []
    others = [r for r in rules if r.get("ID") != TEMP_RULE_ID]
    return [Call(
        "bucket.lifecycle", "s3", "PutBucketLifecycleConfiguration",
        {"Bucket": bucket, "LifecycleConfiguration": {"Rules": others + [temp_lifecycle_rule(days)]}},
        f"set lifecycle s3://{bucket}/temp/ (expire after {days} days)", f"lifecycle of S3 bucket {bucket}",
    )]


# -- the cluster and the namespace -----------------------------------------------------------


def _create_cluster(want: SharedInputs, found: Any, ctx: Context) -> list[Call]:
    if found is not None:
        return []
    cluster = want.settings.cluster
    return [Call(
        "cluster.create", "ecs", "CreateCluster",
        {"clusterName": cluster, "tags": tag_list(BOOTSTRAP_TAGS, "key", "value"),
         "settings": [{"name": "containerInsights", "value": "enabled"}]},
        f"create cluster {cluster} (ECS, Fargate)", f"ECS cluster {cluster}",
    )]


def operation_done(response: Any) -> bool:
    """True once a Cloud Map operation succeeded; its failure is an error."""
    operation = response.get("Operation") or {}
    if operation.get("Status") == "FAIL":
        raise AwsOperationError(f"Cloud Map operation {operation.get('Id')} failed: {operation.get('ErrorMessage')}")
    return operation.get("Status") == "SUCCESS"


def _await_namespace(response: Any, sent: Any) -> Call | None:
    if not response.get("OperationId"):  # it existed already
        return None
    return Call(
        "namespace.operation", "servicediscovery", "GetOperation", {"OperationId": response["OperationId"]},
        f"wait for Cloud Map namespace {sent['Name']}", f"Cloud Map namespace {sent['Name']}", until=operation_done,
    )


def _create_namespace(want: SharedInputs, found: Any, ctx: Context) -> list[Call]:
    if found is not None:
        return []
    s = want.settings
    if not s.vpc_id:
        raise SettingsError(
            f"META_DEPLOYER_VPC_ID must be set to create the Cloud Map namespace {s.namespace!r} "
            "(the private DNS zone is attached to that VPC)"
        )
    return [Call(
        "namespace.create", "servicediscovery", "CreatePrivateDnsNamespace",
        {"Name": s.namespace, "Vpc": s.vpc_id, "Tags": tag_list(BOOTSTRAP_TAGS), "CreatorRequestId": IdempotencyToken()},
        f"create namespace {s.namespace} (Cloud Map private DNS in {s.vpc_id})", f"Cloud Map namespace {s.namespace}",
        ok=("NamespaceAlreadyExists", "ConflictingDomainExists"), follow_up=_await_namespace,
    )]


# -- the execution role ----------------------------------------------------------------------


def _execution_role(inputs: SharedInputs) -> task_role.Role | None:
    if inputs.settings.execution_role_arn:
        return None  # META_DEPLOYER_EXECUTION_ROLE_ARN is used as is
    return task_role.Role(
        DEFAULT_EXECUTION_ROLE_NAME, trust_policy(), EXECUTION_POLICY,
        execution_policy(inputs.partition, inputs.region, inputs.account), BOOTSTRAP_TAGS,
        description="meta_deployer shared ECS task execution role",
    )


def _read_execution_role(gw: Any, scope: Scope) -> Any:
    if scope.settings.execution_role_arn:
        return None
    found = task_role.read_role(gw, DEFAULT_EXECUTION_ROLE_NAME, EXECUTION_POLICY, removal=False)
    if found is not None:
        found["retired"] = tuple(p for p in gw.list_role_policies(DEFAULT_EXECUTION_ROLE_NAME) if p in RETIRED_EXECUTION_POLICIES)
    return found


def _converge_execution_role(want: task_role.Role | None, have: Any, ctx: Context) -> list[Call]:
    if want is None:
        return []
    retire = [
        Call(
            f"execution_role.delete-policy.{policy}", "iam", "DeleteRolePolicy",
            {"RoleName": want.name, "PolicyName": policy},
            f"delete inline policy {policy} of IAM role {want.name} (it read every repo's secrets)",
            f"inline policy {policy} of IAM role {want.name}", ok=("NoSuchEntity",),
        )
        for policy in (have or {}).get("retired", ())
    ]
    return task_role.converge(want, have, ctx) + retire


def _same(inputs: SharedInputs) -> SharedInputs:
    return inputs


BUCKET = Kind("bucket", _same, lambda gw, scope: gw.bucket_exists(scope.settings.bucket), _create_bucket)
BUCKET_FOLDERS = Kind(
    "bucket_folders", _same, lambda gw, scope: gw.existing_keys(scope.settings.bucket, list(BUCKET_LAYOUT)), _folders
)
TEMP_LIFECYCLE = Kind("temp_lifecycle", _same, lambda gw, scope: gw.get_lifecycle_rules(scope.settings.bucket), _lifecycle)
CLUSTER = Kind("cluster", _same, lambda gw, scope: gw.get_cluster(scope.settings.cluster), _create_cluster)
NAMESPACE = Kind("namespace", _same, lambda gw, scope: gw.find_namespace(scope.settings.namespace), _create_namespace)
EXECUTION_ROLE = Kind("execution_role", _execution_role, _read_execution_role, _converge_execution_role)

SHARED_KINDS = (BUCKET, BUCKET_FOLDERS, TEMP_LIFECYCLE, CLUSTER, NAMESPACE, EXECUTION_ROLE, *codebuild.KINDS)
