"""The per-repo execution role's policy, evaluated statement by statement (conditions included).

moto cannot check these: for every service but S3 its enforcing server
authorizes an action against the resource ``*`` (so any resource-scoped grant
denies everything, the repo's own secret included; tried with
``INITIAL_NO_AUTH_ACTION_COUNT``). The evaluator in ``iam_eval.py`` follows
AWS's evaluation logic instead; the request resources are the ARNs AWS
authorizes for each call:

- GetSecretValue: the secret's ARN, ``secret:<name>-<6 random characters>``
  (https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_iam-permissions.html);
- GetParameters: ``parameter/<name without its leading />``
  (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html);
- ECR pulls: ``repository/<repository name>``, GetAuthorizationToken has no resource (``*``)
  (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html);
- CreateLogStream/PutLogEvents: ``log-group:<group>`` and ``log-group:<group>:log-stream:<stream>``
  (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatchlogs.html).
"""

from __future__ import annotations

import json

import pytest

from iam_eval import allowed
from meta_deployer import naming
from meta_deployer.platforms.aws.common import AwsContext
from meta_deployer.platforms.aws.resources.execution_role import ecr_repository_arn, execution_role_policy
from meta_deployer.platforms.aws.resources.shared import execution_policy

CTX = AwsContext("123456789012", "eu-west-1")
REGION_ACCOUNT = "eu-west-1:123456789012"


def secret(name: str) -> str:
    return f"arn:aws:secretsmanager:{REGION_ACCOUNT}:secret:{name}-AbCdEf"


def parameter(name: str) -> str:
    assert name.startswith("/")
    return f"arn:aws:ssm:{REGION_ACCOUNT}:parameter{name}"


def repository(name: str) -> str:
    return f"arn:aws:ecr:{REGION_ACCOUNT}:repository/{name}"


def log_group(name: str, stream: str | None = None) -> str:
    arn = f"arn:aws:logs:{REGION_ACCOUNT}:log-group:{name}"
    return arn if stream is None else f"{arn}:log-stream:{stream}"


def policy(name: str) -> dict:
    return execution_role_policy(name, CTX)


def statement_allowing(policy_doc: dict, action: str, resource: str) -> list[str]:
    """The Sids of the statements that, alone, allow ``action`` on ``resource``."""
    return [
        s["Sid"] for s in policy_doc["Statement"]
        if allowed({"Version": policy_doc["Version"], "Statement": [s]}, action, resource)
    ]


# -- what the role may do ----------------------------------------------------------------


def test_the_role_reads_its_own_and_the_shared_secrets():
    fin = policy("fin")
    assert allowed(fin, "secretsmanager:GetSecretValue", secret("dagster/fin/db"))
    assert allowed(fin, "secretsmanager:GetSecretValue", secret("dagster/fin/team/api"))
    assert allowed(fin, "secretsmanager:GetSecretValue", secret("dagster/shared/smtp"))
    assert allowed(fin, "ssm:GetParameters", parameter("/dagster/fin/db"))
    assert allowed(fin, "ssm:GetParameters", parameter("/dagster/shared/smtp"))


def test_the_role_pulls_its_own_image_and_writes_its_own_log_group():
    fin = policy("fin")
    assert allowed(fin, "ecr:GetAuthorizationToken", "*")
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
        assert allowed(fin, action, repository("dagster/fin"))
    assert allowed(fin, "logs:CreateLogStream", log_group("/dagster/repos/fin"))
    assert allowed(fin, "logs:PutLogEvents", log_group("/dagster/repos/fin", "dagster/dagster/abc"))


# -- what it may not: another repo, a look-alike, the platform ----------------------------

OTHER_SECRETS = [
    "dagster/finance/db",  # a look-alike: 'fin' must not reach 'finance'
    "dagster/fin-evil/db",
    "dagster/finance",  # a secret named like the prefix, without the '/'
    "dagster/fin",  # the prefix itself, not a secret under it
    "dagster/sales/db",
    "dagster/db",  # directly under dagster/, no repo
    "dagster/meta-deployer/git-token",  # the platform's ('meta-deployer' is a reserved repo name)
    "meta-deployer/webhook-secret",
    "dagster/sharedx/db",
]


@pytest.mark.parametrize("name", OTHER_SECRETS)
def test_no_statement_reads_another_repos_or_the_platforms_secret(name):
    fin = policy("fin")
    assert statement_allowing(fin, "secretsmanager:GetSecretValue", secret(name)) == []
    assert statement_allowing(fin, "ssm:GetParameters", parameter("/" + name)) == []
    assert not allowed(fin, "secretsmanager:GetSecretValue", secret(name))


def test_other_accounts_regions_and_actions_are_not_granted():
    fin = policy("fin")
    assert not allowed(fin, "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/fin/db-AbCdEf")
    assert not allowed(fin, "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:eu-west-1:999999999999:secret:dagster/fin/db-AbCdEf")
    for action in ("secretsmanager:PutSecretValue", "secretsmanager:ListSecrets", "ssm:GetParametersByPath", "ssm:PutParameter", "kms:Decrypt"):
        assert not any(allowed(fin, action, r) for r in ("*", secret("dagster/fin/db"), parameter("/dagster/fin/db"))), action


@pytest.mark.parametrize("other", ["finance", "fin-evil", "sales"])
def test_no_statement_pulls_another_repos_image_or_writes_its_logs(other):
    fin = policy("fin")
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
        assert statement_allowing(fin, action, repository(f"dagster/{other}")) == [], action
    assert statement_allowing(fin, "ecr:PutImage", repository("dagster/fin")) == []
    assert statement_allowing(fin, "logs:CreateLogStream", log_group(f"/dagster/repos/{other}")) == []
    assert statement_allowing(fin, "logs:PutLogEvents", log_group(f"/dagster/repos/{other}", "dagster/dagster/x")) == []


def test_only_the_ecr_login_statement_uses_a_wildcard_resource():
    for statement in policy("fin")["Statement"]:
        if statement["Sid"] == "EcrLogin":
            assert statement["Action"] == ["ecr:GetAuthorizationToken"] and statement["Resource"] == ["*"]
            continue
        for resource in statement["Resource"]:
            assert resource != "*" and not resource.endswith(":*:*")
            if resource.endswith("*"):  # every prefix ends with '/' (or ':' after a log group name)
                assert resource[-2] in "/:", resource


def test_two_repos_policies_share_no_resource_but_the_shared_prefix():
    def resources(p):
        return {r for s in p["Statement"] for r in s["Resource"]}

    common = resources(policy("fin")) & resources(policy("finance"))
    assert common == {
        "*", f"arn:aws:secretsmanager:{REGION_ACCOUNT}:secret:dagster/shared/*", f"arn:aws:ssm:{REGION_ACCOUNT}:parameter/dagster/shared/*",
    }


def test_the_pull_grant_follows_the_registry_account_and_region():
    assert ecr_repository_arn("210987654321.dkr.ecr.us-west-2.amazonaws.com/dagster/fin@sha256:ab", "fin", CTX) == (
        "arn:aws:ecr:us-west-2:210987654321:repository/dagster/fin"
    )
    assert ecr_repository_arn("127.0.0.1:5000/dagster/fin@sha256:ab", "fin", CTX) == repository("dagster/fin")
    cn = AwsContext("123456789012", "cn-north-1", "aws-cn")
    assert ecr_repository_arn("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/dagster/fin@sha256:ab", "fin", cn) == (
        "arn:aws-cn:ecr:cn-north-1:123456789012:repository/dagster/fin"
    )


def test_role_names_never_collide_and_fit_iam():
    # dagster-repo-<name>-exec would be the task role of a repo called '<name>-exec'.
    assert naming.execution_role("sales") == "dagster-exec-sales"
    assert naming.execution_role("sales") != naming.task_role("sales-exec")
    names = ["a", "sales", "sales-exec", "exec-sales", "a" * 40]
    roles = [naming.task_role(n) for n in names] + [naming.execution_role(n) for n in names]
    assert len(set(roles)) == len(roles) and all(len(r) <= 64 for r in roles)


def test_the_shared_bootstrap_role_reads_no_secret():
    shared = execution_policy("aws", "eu-west-1", "123456789012")
    text = json.dumps(shared)
    assert "secretsmanager" not in text and "ssm:" not in text and "kms:" not in text
    assert not allowed(shared, "secretsmanager:GetSecretValue", secret("dagster/fin/db"))


# -- the instance's Postgres secret (META_DEPLOYER_PG_SECRET_ARN) --------------------------

PG = secret("dagster/platform/postgres")


def test_with_the_pg_secret_the_role_reads_exactly_that_secret():
    fin = execution_role_policy("fin", CTX, pg_secret_arn=PG)
    assert statement_allowing(fin, "secretsmanager:GetSecretValue", PG) == ["ReadInstancePostgresSecret"]
    # A secret whose name extends it, another platform secret, the same name in another account: none.
    for other in (
        PG + "x", PG.replace("-AbCdEf", "-ZzZzZz"), secret("dagster/platform/webhook"),
        PG.replace("123456789012", "999999999999"),
    ):
        assert statement_allowing(fin, "secretsmanager:GetSecretValue", other) == [], other
    assert not allowed(fin, "secretsmanager:PutSecretValue", PG)
    # Everything else is as without it.
    assert fin["Statement"][:-1] == policy("fin")["Statement"]


def test_without_the_pg_secret_no_statement_reads_a_platform_secret():
    assert statement_allowing(policy("fin"), "secretsmanager:GetSecretValue", PG) == []
    assert "ReadInstancePostgresSecret" not in {s["Sid"] for s in policy("fin")["Statement"]}
