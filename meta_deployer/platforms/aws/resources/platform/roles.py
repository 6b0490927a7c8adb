"""The platform's IAM roles and their one inline policy each (pure); the role kinds reuse
``resources/task_role.py`` (create, trust, policy; removal).

==========================  ==============================================================
``dagster-platform-execution``  ECS pulls the platform image (``dagster/platform``), writes
                                ``/dagster/platform/*`` logs and reads the one secret
                                ``META_DEPLOYER_PG_SECRET_ARN`` (the tasks' Postgres ``secrets``);
                                nothing else (the OIDC client secret is read by ``make platform``,
                                never by a task)
``dagster-platform-webserver``  reads: repo and platform logs, compute logs in S3
                                (``repos/*/logs/*``, ``system/logs/*``); mounts the workspace. Its
                                one write: ``ecs:StopTask`` of run tasks (tag
                                ``managed-by=meta-deployer``), the UI's "Terminate" (EcsRunLauncher
                                runs in the webserver's process); no S3 write, no IAM
``dagster-platform-daemon``     what ``EcsRunLauncher`` needs: RunTask of ``dagster-repo-*``
                                families in the cluster, DescribeTasks/StopTask/TagResource of
                                the cluster's tasks, Register/DescribeTaskDefinition, ListTasks,
                                DescribeNetworkInterfaces (its own task's security groups);
                                ``iam:PassRole`` only on the ``dagster-repo-*`` task roles, the
                                ``dagster-exec-*`` execution roles, the deployer's role (its own
                                runs) and ``dagster-platform-execution``, only to ECS tasks;
                                reads ``/dagster/repos/*`` logs; mounts the workspace
``dagster-platform-deployer``   ECS, IAM, Logs, Cloud Map, ELBv2, ECR, S3, CodeBuild, each on the
                                documented names only: ``dagster-repo-*``/``dagster-exec-*``,
                                ``dagster/*``, ``/dagster/*``, ``repos/*``, ``system/*`` (records and
                                leases, written with conditional PutObject: ``s3:PutObject``);
                                ListTasks/DescribeTasks in the cluster (the webserver replicas)
==========================  ==============================================================

AWS facts relied on, with their sources (Service Authorization Reference, "Actions, resources,
and condition keys for <service>"):

- ``ecs:RegisterTaskDefinition``, ``ecs:DescribeTaskDefinition``, ``ecs:ListTaskDefinitions``,
  ``ecs:DeregisterTaskDefinition`` and ``ecs:ListServices`` take no resource ARN: ``*``.
  ``ecs:RunTask`` is on ``task-definition/<family>:<revision>`` and takes the ``ecs:cluster``
  condition; ``StopTask``, ``DescribeTasks`` and ``TagResource`` are on ``task/<cluster>/*``;
  ``ListTasks`` is on ``container-instance`` and takes ``ecs:cluster``. ``StopTask`` takes
  ``aws:ResourceTag/<key>`` (the task's tags).
- ``ec2:DescribeNetworkInterfaces`` has no resource type: ``*``.
- A conditional write (``If-None-Match``/``If-Match`` on PutObject) needs ``s3:PutObject`` only
  (S3 user guide, "Conditional requests").
- ECS reads a task definition's ``secrets`` with the execution role: ``secretsmanager:GetSecretValue``
  on the secret (ECS developer guide, "Pass Secrets Manager secrets through Amazon ECS environment
  variables").
- ``iam:PassRole`` takes ``iam:PassedToService`` (IAM user guide, "Granting a user permissions to
  pass a role"): ``ecs-tasks.amazonaws.com``.
- Cloud Map ``CreateService`` carries ``servicediscovery:NamespaceArn``, ``aws:RequestTag`` and
  ``aws:TagKeys``; ``DeleteService``/``GetService``/``UpdateService`` are on ``service/<id>`` (ids,
  not names) and carry no namespace key, only their resource type's ``aws:ResourceTag``
  (``servicediscovery:NamespaceName`` is carried by ``DiscoverInstances`` alone). The deployer is
  therefore held to the services that carry the repo tag (``meta-deployer:repo``), which it sets
  on every service it creates.
- EFS ``elasticfilesystem:ClientMount``/``ClientWrite`` are on ``file-system/<id>``, whose resource
  type carries ``aws:ResourceTag/<key>``: the workspace file system is tagged
  ``meta-deployer:platform=workspace``.
- Every condition key used here is one AWS sends for that action: ``tests/iam_eval.py``
  (``CONDITION_KEYS``) writes the rule down and the policy tests check every statement against it.
- ``ecr:GetAuthorizationToken`` has no resource type: ``*``.
"""

from __future__ import annotations

from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.common import ECS_TASKS_PRINCIPAL, POLICY_VERSION, trust_policy
from meta_deployer.platforms.aws.engine import Context, Kind, Scope
from meta_deployer.platforms.aws.instance import MANAGED_BY_TAG
from meta_deployer.platforms.aws.resources import task_role
from meta_deployer.platforms.aws.resources.platform.common import (
    DAEMON,
    DEPLOYER,
    EXECUTION_ROLE,
    IMAGE_REPOSITORY,
    TAG_KEY,
    WEBSERVER,
    PlatformInputs,
    log_group,
    platform_tags,
    role,
)
from meta_deployer.settings import DEFAULT_EXECUTION_ROLE_NAME

POLICY_NAMES = {
    "execution": "pull-platform-image-write-platform-logs",
    WEBSERVER: "read-logs-and-compute-logs",
    DAEMON: "launch-repo-runs",
    DEPLOYER: "deploy-repos",
}
LOG_READ = ("logs:DescribeLogStreams", "logs:FilterLogEvents", "logs:GetLogEvents")


def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": POLICY_VERSION, "Statement": list(statements)}


def _efs_mount(inputs: PlatformInputs, write: bool) -> dict[str, Any]:
    return {
        "Sid": "MountWorkspace" + ("ReadWrite" if write else "ReadOnly"),
        "Effect": "Allow",
        "Action": ["elasticfilesystem:ClientMount"] + (["elasticfilesystem:ClientWrite"] if write else []),
        "Resource": [inputs.arn("elasticfilesystem", "file-system/*")],
        "Condition": {"StringEquals": {f"aws:ResourceTag/{TAG_KEY}": "workspace"}},
    }


def _logs(inputs: PlatformInputs, prefix: str) -> list[str]:
    arn = inputs.arn("logs", f"log-group:{prefix}")
    return [arn, f"{arn}:*"]


def execution_policy(inputs: PlatformInputs) -> dict[str, Any]:
    """Pull ``dagster/platform``, write ``/dagster/platform/*`` logs and read the one Postgres secret
    (ECS resolves the tasks' ``secrets`` with the execution role)."""
    return _doc(
        {"Sid": "ReadInstancePostgresSecret", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
         "Resource": [inputs.pg_secret_arn]},
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
        {"Sid": "PullPlatformImage", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
         "Resource": [inputs.arn("ecr", f"repository/{IMAGE_REPOSITORY}")]},
        {"Sid": "WritePlatformLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": _logs(inputs, "/dagster/platform/*")},
    )


def webserver_policy(inputs: PlatformInputs) -> dict[str, Any]:
    """Read-only: logs, compute logs; mount the workspace read-only."""
    bucket = f"arn:{inputs.partition}:s3:::{inputs.settings.bucket}"
    return _doc(
        {"Sid": "ReadLogs", "Effect": "Allow", "Action": list(LOG_READ),
         "Resource": _logs(inputs, "/dagster/repos/*") + _logs(inputs, "/dagster/platform/*")},
        {"Sid": "ReadComputeLogs", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"{bucket}/repos/*/logs/*", f"{bucket}/system/logs/*"]},
        {"Sid": "ListComputeLogs", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket],
         "Condition": {"StringLike": {"s3:prefix": ["repos/*/logs/*", "system/logs/*"]}}},
        # "Terminate" in the UI: the webserver's EcsRunLauncher.terminate describes the run's task and
        # stops it. Only run tasks: the launcher tags each managed-by=meta-deployer (instance.py), which
        # no service task of the platform or of a repo carries.
        {"Sid": "DescribeClusterTasks", "Effect": "Allow", "Action": ["ecs:DescribeTasks"],
         "Resource": [inputs.arn("ecs", f"task/{inputs.settings.cluster}/*")]},
        {"Sid": "StopRunTasks", "Effect": "Allow", "Action": ["ecs:StopTask"],
         "Resource": [inputs.arn("ecs", f"task/{inputs.settings.cluster}/*")],
         "Condition": {"StringEquals": {f"aws:ResourceTag/{MANAGED_BY_TAG['key']}": MANAGED_BY_TAG["value"]}}},
        _efs_mount(inputs, write=False),
    )


def pass_role_targets(inputs: PlatformInputs) -> list[str]:
    """The only roles the daemon may pass (to ECS tasks)."""
    return [
        inputs.role_arn("dagster-repo-*"), inputs.role_arn("dagster-exec-*"),
        inputs.role_arn(role(DEPLOYER)), inputs.role_arn(EXECUTION_ROLE),
    ]


def daemon_policy(inputs: PlatformInputs) -> dict[str, Any]:
    """What EcsRunLauncher needs to launch, watch and stop repo runs; nothing else."""
    cluster = inputs.settings.cluster
    cluster_arn = inputs.arn("ecs", f"cluster/{cluster}")
    in_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
    return _doc(
        {"Sid": "RunRepoTasks", "Effect": "Allow", "Action": ["ecs:RunTask"],
         "Resource": [inputs.arn("ecs", "task-definition/dagster-repo-*:*"),
                      inputs.arn("ecs", f"task-definition/{role(DEPLOYER)}:*")],
         "Condition": in_cluster},
        {"Sid": "WatchAndStopTasks", "Effect": "Allow", "Action": ["ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource"],
         "Resource": [inputs.arn("ecs", f"task/{cluster}/*")]},
        {"Sid": "ListTasks", "Effect": "Allow", "Action": ["ecs:ListTasks"], "Resource": ["*"], "Condition": in_cluster},
        # use_current_ecs_task_config: the launcher reads its own task's network interface for the
        # run's security groups (dagster_aws.ecs.tasks.get_task_kwargs_from_current_task).
        {"Sid": "ReadOwnNetworkInterface", "Effect": "Allow", "Action": ["ec2:DescribeNetworkInterfaces"], "Resource": ["*"]},
        {"Sid": "TaskDefinitions", "Effect": "Allow",
         "Action": ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"], "Resource": ["*"]},
        {"Sid": "PassRunRoles", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": pass_role_targets(inputs),
         "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS_PRINCIPAL}}},
        {"Sid": "ReadRepoLogs", "Effect": "Allow", "Action": list(LOG_READ), "Resource": _logs(inputs, "/dagster/repos/*")},
        _efs_mount(inputs, write=False),
    )


def deployer_policy(inputs: PlatformInputs, codebuild_project: str | None = None) -> dict[str, Any]:
    """Deploy repos: every service, only on the documented names."""
    s = inputs.settings
    cluster = s.cluster
    bucket = f"arn:{inputs.partition}:s3:::{s.bucket}"
    ecs_names = [
        inputs.arn("ecs", f"cluster/{cluster}"), inputs.arn("ecs", f"service/{cluster}/*"),
        inputs.arn("ecs", f"task/{cluster}/*"), inputs.arn("ecs", "task-definition/dagster-repo-*:*"),
    ]
    repo_roles = [inputs.role_arn("dagster-repo-*"), inputs.role_arn("dagster-exec-*")]
    statements = [
        {"Sid": "EcsOnRepoNames", "Effect": "Allow",
         "Action": ["ecs:CreateService", "ecs:DeleteService", "ecs:DescribeClusters", "ecs:DescribeServices",
                    "ecs:DescribeTasks", "ecs:RunTask", "ecs:StopTask", "ecs:TagResource",
                    "ecs:UntagResource", "ecs:UpdateService"],
         "Resource": ecs_names},
        # ListTasks is on container-instance, not on a task: any resource, held to the cluster (the
        # webserver replicas, META_DEPLOYER_WEBSERVERS=ecs:..., and a repo's tasks).
        {"Sid": "ListTasksInCluster", "Effect": "Allow", "Action": ["ecs:ListTasks"], "Resource": ["*"],
         "Condition": {"ArnEquals": {"ecs:cluster": inputs.arn("ecs", f"cluster/{cluster}")}}},
        {"Sid": "EcsWithoutResourceTypes", "Effect": "Allow",
         "Action": ["ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:ListServices",
                    "ecs:ListTaskDefinitions", "ecs:RegisterTaskDefinition"],
         "Resource": ["*"]},
        {"Sid": "RepoRoles", "Effect": "Allow",
         "Action": ["iam:CreateRole", "iam:DeleteRole", "iam:DeleteRolePolicy", "iam:GetRole", "iam:GetRolePolicy",
                    "iam:ListRolePolicies", "iam:PutRolePolicy", "iam:TagRole", "iam:UpdateAssumeRolePolicy"],
         "Resource": repo_roles},
        {"Sid": "PassRepoRoles", "Effect": "Allow", "Action": ["iam:PassRole"],
         "Resource": repo_roles + [inputs.role_arn(DEFAULT_EXECUTION_ROLE_NAME)],
         "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS_PRINCIPAL}}},
        {"Sid": "DagsterLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:DescribeLogStreams", "logs:FilterLogEvents",
                    "logs:GetLogEvents", "logs:PutRetentionPolicy", "logs:TagResource"],
         "Resource": _logs(inputs, "/dagster/*")},
        {"Sid": "ListLogGroups", "Effect": "Allow", "Action": ["logs:DescribeLogGroups"], "Resource": ["*"]},
        # Cloud Map names services by id, and only DiscoverInstances carries a namespace-name key: the
        # deployer may create (and tag) only services that carry the repo tag, and act only on those.
        {"Sid": "CloudMapCreateRepoServices", "Effect": "Allow",
         "Action": ["servicediscovery:CreateService", "servicediscovery:TagResource"],
         "Resource": ["*"], "Condition": {"StringLike": {f"aws:RequestTag/{naming.REPO_TAG_KEY}": "?*"}}},
        {"Sid": "CloudMapOnRepoServices", "Effect": "Allow",
         "Action": ["servicediscovery:DeleteService", "servicediscovery:GetService", "servicediscovery:UpdateService"],
         "Resource": [inputs.arn("servicediscovery", "service/*")],
         "Condition": {"StringLike": {f"aws:ResourceTag/{naming.REPO_TAG_KEY}": "?*"}}},
        {"Sid": "CloudMapList", "Effect": "Allow",
         "Action": ["servicediscovery:ListNamespaces", "servicediscovery:ListServices", "servicediscovery:GetOperation"],
         "Resource": ["*"]},
        {"Sid": "RepoTargetGroups", "Effect": "Allow",
         "Action": ["elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:DeleteTargetGroup",
                    "elasticloadbalancing:AddTags"],
         "Resource": [inputs.arn("elasticloadbalancing", "targetgroup/dagster-*/*")]},
        {"Sid": "RepoListenerRules", "Effect": "Allow",
         "Action": ["elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule", "elasticloadbalancing:AddTags"],
         "Resource": [inputs.arn("elasticloadbalancing", "listener/app/*"),
                      inputs.arn("elasticloadbalancing", "listener-rule/app/*")]},
        {"Sid": "ElbDescribe", "Effect": "Allow",
         "Action": ["elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTargetGroups"], "Resource": ["*"]},
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
        {"Sid": "DagsterImages", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
                    "ecr:CreateRepository", "ecr:DeleteRepository", "ecr:DescribeImages", "ecr:DescribeRepositories",
                    "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"],
         "Resource": [inputs.arn("ecr", "repository/dagster/*")]},
        {"Sid": "RepoAndSystemObjects", "Effect": "Allow",
         "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
         "Resource": [f"{bucket}/repos/*", f"{bucket}/system/*"]},
        {"Sid": "ListRepoAndSystem", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket],
         "Condition": {"StringLike": {"s3:prefix": ["repos/*", "system/*"]}}},
        _efs_mount(inputs, write=True),
    ]
    if codebuild_project:
        statements.append({
            "Sid": "Builds", "Effect": "Allow", "Action": ["codebuild:BatchGetBuilds", "codebuild:StartBuild"],
            "Resource": [inputs.arn("codebuild", f"project/{codebuild_project}")],
        })
    return _doc(*statements)


def want_roles(inputs: PlatformInputs) -> dict[str, task_role.Role]:
    """Every platform role by key (``execution`` and the three components)."""
    codebuild = inputs.codebuild_project  # the deployer's builds: only with the codebuild builder
    docs = {
        "execution": (EXECUTION_ROLE, execution_policy(inputs)),
        WEBSERVER: (role(WEBSERVER), webserver_policy(inputs)),
        DAEMON: (role(DAEMON), daemon_policy(inputs)),
        DEPLOYER: (role(DEPLOYER), deployer_policy(inputs, codebuild)),
    }
    return {
        key: task_role.Role(name, trust_policy(), POLICY_NAMES[key], doc, platform_tags(key),
                            description=f"meta_deployer platform: {key}")
        for key, (name, doc) in docs.items()
    }


def _kind(key: str) -> Kind:
    def want(inputs: PlatformInputs) -> task_role.Role:
        return want_roles(inputs)[key]

    def read(gw: Any, scope: Scope) -> Any:
        name = EXECUTION_ROLE if key == "execution" else role(key)
        return task_role.read_role(gw, name, POLICY_NAMES[key], scope.removal)

    def remove(have: Any, ctx: Context) -> list:
        return task_role.remove(have, ctx) if ctx.scope.purge else []

    return Kind(f"platform_role_{key}", want, read, task_role.converge, remove, removal_rank=70)


KINDS = tuple(_kind(key) for key in ("execution", WEBSERVER, DAEMON, DEPLOYER))
