"""IAM isolation, enforced: a moto server with ``INITIAL_NO_AUTH_ACTION_COUNT`` checks S3 calls.

The first three calls (unauthenticated) create an admin user and its keys;
every later call is signed and checked against IAM policies. The deployer's
gateway then creates repo ``a``'s task role with the policy the planner
generated. The role trusts only ``ecs-tasks.amazonaws.com``, so a test cannot
assume it (moto even fails on that trust check); instead the policy document
read back from the live role is bound to an IAM user, and S3 calls signed
with that user's keys must stay inside ``repos/a/``, read ``repos/shared/``,
and read ``repos/b/`` only once ``b`` is listed in ``access.read``.

moto evaluates actions and resources but not condition keys, so the
``s3:prefix`` condition on ListBucket is checked on the document itself
(``test_aws_plan.py``), and here only through object reads and writes.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from meta_deployer.platforms.aws import plan as aws_plan
from meta_deployer.platforms.aws.gateway import AwsGateway

BUCKET = "dagster-storage"
SETUP_CALLS = 3  # create_user, put_user_policy, create_access_key


def denied(fn, **kwargs) -> bool:
    try:
        fn(**kwargs)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied", exc.response["Error"]
        return True
    return False


@pytest.fixture
def enforcing(moto_factory, monkeypatch):
    server = moto_factory(INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_CALLS))
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    iam = boto3.client("iam")
    iam.create_user(UserName="admin")
    iam.put_user_policy(
        UserName="admin", PolicyName="all",
        PolicyDocument=aws_plan.canonical_json({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    )
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    admin = boto3.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1"
    )
    s3 = admin.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for k in ("repos/a/x", "repos/b/x", "repos/a-evil/x", "repos/shared/x", "repos/b/assets/x", "repos/b/code/c.tar.gz",
              "repos/a/code/c.tar.gz"):
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"data")
    return admin


def bind_role_policy_to_user(admin: boto3.Session, gateway: AwsGateway, role: str, user: str) -> None:
    """Put the live role's inline policy (as the deployer wrote it) on ``user``."""
    document = gateway.get_role_policy(role, aws_plan.TASK_POLICY_NAME)
    admin.client("iam").put_user_policy(
        UserName=user, PolicyName=aws_plan.TASK_POLICY_NAME, PolicyDocument=aws_plan.canonical_json(document)
    )


def user_session(admin: boto3.Session, user: str) -> boto3.Session:
    iam = admin.client("iam")
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return boto3.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1"
    )


def test_task_role_of_a_is_confined_to_its_prefix(enforcing):
    admin = enforcing
    gateway = AwsGateway(admin)
    role = "dagster-repo-a"
    gateway.create_role(role, aws_plan.canonical_json(aws_plan.trust_policy()), aws_plan.repo_tags("a"), "test")
    gateway.put_role_policy(role, aws_plan.TASK_POLICY_NAME, aws_plan.canonical_json(aws_plan.task_role_policy(BUCKET, "a")))
    s3 = user_session(admin, "repo-a").client("s3")
    bind_role_policy_to_user(admin, gateway, role, "repo-a")

    # its own prefix: read and write
    s3.put_object(Bucket=BUCKET, Key="repos/a/storage/run-1/out", Body=b"1")
    assert s3.get_object(Bucket=BUCKET, Key="repos/a/x")["Body"].read() == b"data"
    # another repo's prefix, a look-alike prefix, and shared: no write
    assert denied(s3.put_object, Bucket=BUCKET, Key="repos/b/y", Body=b"1")
    assert denied(s3.put_object, Bucket=BUCKET, Key="repos/a-evil/y", Body=b"1")
    assert denied(s3.put_object, Bucket=BUCKET, Key="repos/shared/y", Body=b"1")
    assert denied(s3.put_object, Bucket=BUCKET, Key="system/y", Body=b"1")
    # shared: read
    assert s3.get_object(Bucket=BUCKET, Key="repos/shared/x")["Body"].read() == b"data"
    # b and a-evil: no read
    assert denied(s3.get_object, Bucket=BUCKET, Key="repos/b/x")
    assert denied(s3.get_object, Bucket=BUCKET, Key="repos/a-evil/x")

    # access.read: [b] grants read (never write) on repos/b/assets/, never on b's code archives
    gateway.put_role_policy(
        role, aws_plan.TASK_POLICY_NAME, aws_plan.canonical_json(aws_plan.task_role_policy(BUCKET, "a", read=("b",)))
    )
    bind_role_policy_to_user(admin, gateway, role, "repo-a")
    assert s3.get_object(Bucket=BUCKET, Key="repos/b/assets/x")["Body"].read() == b"data"
    assert s3.get_object(Bucket=BUCKET, Key="repos/a/code/c.tar.gz")["Body"].read() == b"data"  # its own code
    assert denied(s3.get_object, Bucket=BUCKET, Key="repos/b/code/c.tar.gz")
    assert denied(s3.get_object, Bucket=BUCKET, Key="repos/b/x")
    assert denied(s3.put_object, Bucket=BUCKET, Key="repos/b/assets/y", Body=b"1")
    assert denied(s3.get_object, Bucket=BUCKET, Key="repos/a-evil/x")
