"""The repo's own ECS task execution role: what ECS itself does for the repo's tasks, and no more.

ECS uses a task's *execution* role (not its task role) to pull the image, to
create the awslogs stream and to fetch the ``secrets`` it injects
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html).
One shared execution role would let any repo's task definition inject any
other repo's secret, whatever the spec checked, so every repo gets its own:
``dagster-exec-<name>`` (``naming.execution_role``), trusted by ECS tasks only,
with one inline policy (:func:`execution_role_policy`) that allows

- ``ecr:GetAuthorizationToken`` on ``*``: the action has no resource type, so
  no narrower resource is valid
  (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html);
  the token alone pulls nothing, the pull actions below are scoped;
- the three image-pull actions on the repo's own ECR repository ARN
  ``repository/dagster/<name>`` exactly (no wildcard: ``dagster/fin`` is not
  ``dagster/finance``);
- ``logs:CreateLogStream``/``logs:PutLogEvents`` on the repo's log group
  ``log-group:/dagster/repos/<name>`` and its streams ``...:*``. The delimiter
  after the name is ``:``, which a log group name cannot contain
  (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html:
  ``[\\.\\-_/#A-Za-z0-9]+``), so ``/dagster/repos/fin:*`` never matches
  ``/dagster/repos/finance``;
- ``secretsmanager:GetSecretValue`` on ``secret:dagster/<name>/*`` and
  ``secret:dagster/shared/*``, and ``ssm:GetParameters`` on
  ``parameter/dagster/<name>/*`` and ``parameter/dagster/shared/*`` (the
  permissions ECS needs to inject them:
  https://docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-secrets-manager.html,
  https://docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-ssm-paramstore.html).
  Every prefix ends with ``/``. An SSM parameter ``/dagster/x/y`` has the ARN
  ``parameter/dagster/x/y`` (the name's leading ``/`` is not doubled:
  https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html).

**The instance's Postgres secret.** With ``META_DEPLOYER_PG_SECRET_ARN`` the task
definition injects the instance's Postgres fields (``<arn>:<json-key>::``), so the role
may also ``secretsmanager:GetSecretValue`` that one secret: its full ARN exactly, no
wildcard (the setting only takes a full ARN, ``secret:<name>-<6 characters>``, so no
other secret matches; ECS needs GetSecretValue on the secret whatever JSON key it picks,
see the Secrets Manager page above). The platform's other secrets stay out of reach.

**No ``kms:Decrypt``.** ECS needs it only for secrets encrypted with a
customer managed key; with the default AWS managed keys (``aws/secretsmanager``,
``aws/ssm``) the service decrypts on the caller's behalf (see the "Required
IAM permissions" of the two pages above). A grant would have to name the key
and be scoped by encryption context (``kms:EncryptionContext:SecretARN`` for
Secrets Manager, ``kms:EncryptionContext:PARAMETER_ARN`` for SSM, both
``StringLike`` on this repo's prefixes, plus ``kms:ViaService``); the deployer
has no setting naming a key, so it grants none: a repo whose secrets use a
customer managed key needs that scoped grant added to its key policy.

The task definition and ``DAGSTER_CONTAINER_CONTEXT`` (so runs too) use this
role; removal deletes it.
"""

from __future__ import annotations

import re
from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.common import (
    POLICY_VERSION,
    AwsContext,
    RepoInputs,
    repo_tags,
    trust_policy,
)
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Scope
from meta_deployer.platforms.aws.resources import task_role
from meta_deployer.spec import SHARED_SECRETS_PREFIX

#: Name of the execution role's one inline policy.
EXECUTION_POLICY_NAME = "pull-own-image-write-own-logs-read-own-secrets"
DESCRIPTION = "meta_deployer execution role: this repo's image, log group and secrets only"
#: The actions ECS needs to pull an image from ECR (AmazonECSTaskExecutionRolePolicy).
ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
_ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\Z")


def secrets_prefix(name: str) -> str:
    """The Secrets Manager name prefix of the repo's own secrets (SSM: with a leading ``/``)."""
    return f"dagster/{naming.validate_name(name)}/"


def ecr_repository_arn(image: str, name: str, ctx: AwsContext) -> str:
    """The ARN of the repo's ECR repository, in the registry's account and region when the image is
    on ECR (``<account>.dkr.ecr.<region>.amazonaws.com/...``), else the deployment's."""
    host = image.split("/", 1)[0]
    found = _ECR_HOST.match(host)
    account, region = (found["account"], found["region"]) if found else (ctx.account_id, ctx.region)
    return f"arn:{ctx.partition}:ecr:{region}:{account}:repository/{naming.ecr_repository(name)}"


def execution_role_policy(
    name: str, ctx: AwsContext, ecr_repository: str | None = None, pg_secret_arn: str | None = None
) -> dict[str, Any]:
    """The execution role's only inline policy: see the module docstring (every prefix ends with ``/``).

    With ``pg_secret_arn`` (``META_DEPLOYER_PG_SECRET_ARN``, a full secret ARN) one more statement reads
    exactly that secret: the instance's Postgres fields, which the task definition injects.
    """
    p, region, account = ctx.partition, ctx.region, ctx.account_id
    own = secrets_prefix(name)
    log_group = f"arn:{p}:logs:{region}:{account}:log-group:{naming.log_group(name)}"
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
            {
                "Sid": "PullOwnImage",
                "Effect": "Allow",
                "Action": ECR_PULL_ACTIONS,
                "Resource": [ecr_repository or f"arn:{p}:ecr:{region}:{account}:repository/{naming.ecr_repository(name)}"],
            },
            {
                "Sid": "WriteOwnLogGroup",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [log_group, f"{log_group}:*"],
            },
            {
                "Sid": "ReadOwnAndSharedSecrets",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": [f"arn:{p}:secretsmanager:{region}:{account}:secret:{prefix}*" for prefix in (own, SHARED_SECRETS_PREFIX)],
            },
            {
                "Sid": "ReadOwnAndSharedParameters",
                "Effect": "Allow",
                "Action": ["ssm:GetParameters"],
                "Resource": [f"arn:{p}:ssm:{region}:{account}:parameter/{prefix}*" for prefix in (own, SHARED_SECRETS_PREFIX)],
            },
        ]
        + (
            [{
                "Sid": "ReadInstancePostgresSecret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": [pg_secret_arn],
            }]
            if pg_secret_arn
            else []
        ),
    }


def want(inputs: RepoInputs) -> task_role.Role:
    name = inputs.name
    return task_role.Role(
        name=naming.execution_role(name),
        trust_policy=trust_policy(),
        policy_name=EXECUTION_POLICY_NAME,
        policy=execution_role_policy(
            name, inputs.ctx, ecr_repository_arn(inputs.image, name, inputs.ctx), inputs.settings.pg_secret_arn
        ),
        tags=repo_tags(name),
        description=DESCRIPTION,
    )


def read(gw: Any, scope: Scope) -> dict[str, Any] | None:
    return task_role.read_role(gw, naming.execution_role(scope.name), EXECUTION_POLICY_NAME, scope.removal)


def converge(want: task_role.Role, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    return task_role.converge(want, have, ctx)


KIND = Kind("execution_role", want, read, converge, task_role.remove, removal_rank=30)
