"""The CodeBuild project ``make bootstrap`` keeps when ``META_DEPLOYER_BUILDER=codebuild`` (pure).

Three kinds, in this order: the project's log group, its service role, the project.

- **log group** ``/aws/codebuild/<project>`` (CodeBuild's own default name), with the platform's
  retention; the project writes there (``logsConfig``) and the deployer streams it into the run log.
- **service role** ``<project>-service-role`` (shortened with a hash past IAM's 64 characters),
  trusted by ``codebuild.amazonaws.com`` only, with one inline policy naming exactly what a build
  touches (:func:`service_role_policy`): read the build contexts under the bucket's
  ``system/builds/`` prefix, push to ``dagster/*`` ECR repositories, write its own log group.
- **project**: a Linux container (``META_DEPLOYER_CODEBUILD_IMAGE``, ``_COMPUTE_TYPE``) that is
  **not** privileged: each build asks for privileged mode itself (StartBuild's
  ``privilegedModeOverride``), and only the deployer's builds do. Its source is the ``system/builds/``
  folder and its buildspec a stub that fails: every build sends its own buildspec and reads its own
  context (``platforms/codebuild.py``).

AWS rules relied on (checked by tests/test_codebuild.py against the requests we make):

- CreateProject ``name``: 2-150 characters, ``[A-Za-z0-9][A-Za-z0-9\\-_]{1,149}`` (botocore's CodeBuild
  service model, ``ProjectName``); checked by the setting.
- An S3 source is "the path to the ZIP file that contains the source code" or "the path to the
  folder" (CodeBuild API reference, ``ProjectSource.location``; user guide "Upload the source code":
  "For build input stored in S3 buckets only, you must create a ZIP file"). Our context is a tar.gz,
  so builds override the source type to ``NO_SOURCE`` and the buildspec fetches the archive.
- ``privilegedMode``: "Enables running the Docker daemon inside a Docker container. Set to true only if
  the build project is used to build Docker images" (API reference, ``ProjectEnvironment``).
- Pushing to ECR needs ``ecr:GetAuthorizationToken`` (no resource type, so ``*``) and, on the
  repository, ``BatchCheckLayerAvailability``, ``InitiateLayerUpload``, ``UploadLayerPart``,
  ``CompleteLayerUpload``, ``PutImage`` (ECR user guide, "Pushing an image": required IAM permissions);
  pulling a cached base layer from our own repositories adds ``BatchGetImage`` and
  ``GetDownloadUrlForLayer``.
- A CodeBuild service role writes logs with ``logs:CreateLogGroup``, ``CreateLogStream`` and
  ``PutLogEvents`` (CodeBuild user guide, "Create a CodeBuild service role"); the group exists
  already, so only the last two, on ``log-group:<group>`` and ``log-group:<group>:*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.common import POLICY_VERSION, canonical_json, tag_list, tags
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Scope

SERVICE_PRINCIPAL = "codebuild.amazonaws.com"
#: Where build contexts go: ``s3://<bucket>/system/builds/<name>/<tag>.tar.gz``.
BUILDS_PREFIX = "system/builds/"
POLICY_NAME = "read-build-contexts-push-dagster-images-write-own-logs"
ECR_PUSH_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
)
#: The project's own buildspec: builds always send theirs (StartBuild buildspecOverride).
STUB_BUILDSPEC = (
    "version: 0.2\n"
    "phases:\n"
    "  build:\n"
    "    commands:\n"
    "      - echo 'meta_deployer starts every build with its own buildspec; this project is not meant to be run alone' && exit 1\n"
)
CODEBUILD_TAGS = tags({"meta-deployer:shared": "true", "meta-deployer:builder": "codebuild"})


def log_group_name(project: str) -> str:
    """``/aws/codebuild/<project>``: CodeBuild's default log group name for the project."""
    return f"/aws/codebuild/{project}"


def service_role_name(project: str) -> str:
    """``<project>-service-role``, at most 64 characters (IAM)."""
    return naming.fit(f"{project}-service-role", 64)


def trust_policy() -> dict[str, Any]:
    """Only CodeBuild may assume the service role."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [{"Effect": "Allow", "Principal": {"Service": SERVICE_PRINCIPAL}, "Action": "sts:AssumeRole"}],
    }


def service_role_policy(bucket: str, project: str, partition: str, region: str, account: str) -> dict[str, Any]:
    """What a build may do: read ``system/builds/``, push ``dagster/*`` images, write its log group."""
    group = log_group_name(project)
    logs_arn = f"arn:{partition}:logs:{region}:{account}:log-group:{group}"
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "ReadBuildContexts",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:{partition}:s3:::{bucket}/{BUILDS_PREFIX}*"],
            },
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
            {
                "Sid": "PushDagsterImages",
                "Effect": "Allow",
                "Action": list(ECR_PUSH_ACTIONS),
                "Resource": [f"arn:{partition}:ecr:{region}:{account}:repository/dagster/*"],
            },
            {
                "Sid": "WriteOwnLogGroup",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [logs_arn, f"{logs_arn}:*"],
            },
        ],
    }


@dataclass(frozen=True)
class Project:
    """The desired project, its role and log group."""

    name: str
    role_name: str
    role_arn: str
    policy: dict[str, Any]
    log_group: str
    retention_days: int
    bucket: str
    image: str
    compute_type: str

    def source(self) -> dict[str, Any]:
        return {"type": "S3", "location": f"{self.bucket}/{BUILDS_PREFIX}", "buildspec": STUB_BUILDSPEC}

    def environment(self) -> dict[str, Any]:
        return {"type": "LINUX_CONTAINER", "image": self.image, "computeType": self.compute_type, "privilegedMode": False}

    def logs_config(self) -> dict[str, Any]:
        return {"cloudWatchLogs": {"status": "ENABLED", "groupName": self.log_group}, "s3Logs": {"status": "DISABLED"}}

    def projection(self) -> dict[str, Any]:
        """The fields we set, as BatchGetProjects returns them (AWS adds others; they are not compared)."""
        return {
            "source": self.source(),
            "environment": self.environment(),
            "serviceRole": self.role_arn,
            "logsConfig": self.logs_config(),
        }


def want(inputs: Any) -> Project | None:
    images = inputs.images
    if images is None or images.builder != "codebuild":
        return None
    project = images.codebuild_project
    role = service_role_name(project)
    return Project(
        name=project,
        role_name=role,
        role_arn=f"arn:{inputs.partition}:iam::{inputs.account}:role/{role}",
        policy=service_role_policy(inputs.settings.bucket, project, inputs.partition, inputs.region, inputs.account),
        log_group=log_group_name(project),
        retention_days=inputs.settings.log_retention_days,
        bucket=inputs.settings.bucket,
        image=images.codebuild_image,
        compute_type=images.codebuild_compute_type,
    )


def _project_name(scope: Scope) -> str | None:
    images = scope.images
    return images.codebuild_project if images is not None and images.builder == "codebuild" else None


def project_projection(found: dict[str, Any]) -> dict[str, Any]:
    """What :meth:`Project.projection` compares, read from a described project."""
    env = found.get("environment") or {}
    source = found.get("source") or {}
    logs = (found.get("logsConfig") or {})
    return {
        "source": {k: source.get(k) for k in ("type", "location", "buildspec")},
        "environment": {k: env.get(k) for k in ("type", "image", "computeType", "privilegedMode")},
        "serviceRole": found.get("serviceRole"),
        "logsConfig": {
            "cloudWatchLogs": {k: (logs.get("cloudWatchLogs") or {}).get(k) for k in ("status", "groupName")},
            "s3Logs": {"status": (logs.get("s3Logs") or {}).get("status")},
        },
    }


# -- the log group ------------------------------------------------------------------


def _read_log_group(gw: Any, scope: Scope) -> Any:
    project = _project_name(scope)
    return gw.get_log_group(log_group_name(project)) if project else None


def _converge_log_group(want: Project | None, have: Any, ctx: Context) -> list[Call]:
    if want is None:
        return []
    retention = Call(
        "codebuild.log_group.retention", "logs", "PutRetentionPolicy",
        {"logGroupName": want.log_group, "retentionInDays": want.retention_days},
        f"set retention of log group {want.log_group} to {want.retention_days} days", f"log group {want.log_group}",
    )
    if have is None:
        return [
            Call(
                "codebuild.log_group.create", "logs", "CreateLogGroup",
                {"logGroupName": want.log_group, "tags": dict(CODEBUILD_TAGS)},
                f"create log group {want.log_group} (CodeBuild builds)", f"log group {want.log_group}",
                ok=("ResourceAlreadyExistsException",),
            ),
            retention,
        ]
    return [retention] if have.get("retentionInDays") != want.retention_days else []


# -- the service role -----------------------------------------------------------------


def _read_role(gw: Any, scope: Scope) -> Any:
    project = _project_name(scope)
    if not project:
        return None
    name = service_role_name(project)
    found = gw.get_role(name)
    return None if found is None else {"role": found, "policy": gw.get_role_policy(name, POLICY_NAME)}


def _converge_role(want: Project | None, have: Any, ctx: Context) -> list[Call]:
    if want is None:
        return []
    resource = f"IAM role {want.role_name}"
    steps = []
    if have is None:
        steps.append(Call(
            "codebuild.role.create", "iam", "CreateRole",
            {"RoleName": want.role_name, "AssumeRolePolicyDocument": canonical_json(trust_policy()),
             "Tags": tag_list(CODEBUILD_TAGS), "Description": f"meta_deployer: CodeBuild project {want.name}"},
            f"create IAM role {want.role_name} (trusted by {SERVICE_PRINCIPAL})", resource, ok=("EntityAlreadyExists",),
        ))
    elif have["role"].get("AssumeRolePolicyDocument") != trust_policy():
        steps.append(Call(
            "codebuild.role.trust", "iam", "UpdateAssumeRolePolicy",
            {"RoleName": want.role_name, "PolicyDocument": canonical_json(trust_policy())},
            f"update trust policy of IAM role {want.role_name}", resource,
        ))
    if have is None or have.get("policy") != want.policy:
        steps.append(Call(
            "codebuild.role.policy", "iam", "PutRolePolicy",
            {"RoleName": want.role_name, "PolicyName": POLICY_NAME, "PolicyDocument": canonical_json(want.policy)},
            f"put inline policy {POLICY_NAME} on IAM role {want.role_name}",
            f"inline policy {POLICY_NAME} of IAM role {want.role_name}",
        ))
    return steps


# -- the project ------------------------------------------------------------------------

_NEW_ROLE_HINT = (
    "A service role created a moment ago can take a few seconds before CodeBuild may assume it; "
    "run make bootstrap again"
)


def _read_project(gw: Any, scope: Scope) -> Any:
    project = _project_name(scope)
    return gw.get_codebuild_project(project) if project else None


def project_params(want: Project) -> dict[str, Any]:
    """CreateProject / UpdateProject parameters."""
    return {
        "name": want.name,
        "description": "meta_deployer image builds (one build per image tag)",
        "source": want.source(),
        "artifacts": {"type": "NO_ARTIFACTS"},
        "environment": want.environment(),
        "serviceRole": want.role_arn,
        "logsConfig": want.logs_config(),
    }


def _converge_project(want: Project | None, have: Any, ctx: Context) -> list[Call]:
    if want is None:
        return []
    resource = f"CodeBuild project {want.name}"
    if have is None:
        params = {**project_params(want), "tags": tag_list(CODEBUILD_TAGS, "key", "value")}
        return [Call(
            "codebuild.project.create", "codebuild", "CreateProject", params,
            f"create CodeBuild project {want.name} ({want.compute_type}, {want.image}; privileged per build only)",
            resource, ok=("ResourceAlreadyExistsException",), hints=(("InvalidInputException", _NEW_ROLE_HINT),),
        )]
    if project_projection(have) != want.projection():
        return [Call(
            "codebuild.project.update", "codebuild", "UpdateProject", project_params(want),
            f"update CodeBuild project {want.name}", resource, hints=(("InvalidInputException", _NEW_ROLE_HINT),),
        )]
    return []


LOG_GROUP = Kind("codebuild_log_group", want, _read_log_group, _converge_log_group)
SERVICE_ROLE = Kind("codebuild_role", want, _read_role, _converge_role)
PROJECT = Kind("codebuild_project", want, _read_project, _converge_project)
KINDS = (LOG_GROUP, SERVICE_ROLE, PROJECT)
