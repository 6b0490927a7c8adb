"""Mounted code on the ecs platform, against a moto server that enforces IAM, the real engine and registry.

A templated repo deployed on ecs gets a dependency image (built FROM its release's base, pushed to the
test registry) and its commit's code archive, written once to ``s3://<bucket>/repos/<name>/code/<commit>.tar.gz``
with its sha256. The task definition the service runs tells the entry point where the archive is and
its sha256. Then the dependency image is started as Fargate would start it: the task definition's
environment and command, and only the credentials of the repo's own task role (its live policy, read back
from IAM and bound to a user, as in ``test_iam_isolation.py``: moto cannot assume a role that trusts only
ECS). The entry point fetches the archive from S3 with them, checks it, and the code server serves the
repo's definitions, which are not in the image. The same credentials cannot read another repo's archive.
"""

from __future__ import annotations

import hashlib
import time

import boto3
import pytest
from dockerkit import DEFINITIONS, Collect, checkout, engine_env, repo_names, spec_for, unique_name  # noqa: F401
from test_ecs_support import make_network, settings_for

from meta_deployer import codearchive, versions
from meta_deployer.platforms import images, location
from meta_deployer.platforms.aws import plan as aws_plan
from meta_deployer.platforms.aws.bootstrap import bootstrap
from meta_deployer.platforms.aws.common import CONTAINER_NAME
from meta_deployer.platforms.aws.resources.task_definition import LOG_STREAM_PREFIX
from meta_deployer.platforms.ecs import EcsPlatform
from meta_deployer_runtime import contract

pytestmark = pytest.mark.docker

SETUP_CALLS = 3  # create_user, put_user_policy, create_access_key


def role_only_credentials(moto_factory, policy: dict, bucket: str, objects: dict[str, bytes]) -> dict[str, str]:
    """An IAM-enforcing moto server holding ``objects`` in ``bucket``, and the environment of a user whose only
    policy is ``policy`` (the task role's, as the deployer wrote it): every call is signed and checked."""
    server = moto_factory(INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_CALLS))
    iam = boto3.client("iam", endpoint_url=server.url)
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=aws_plan.canonical_json(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    admin = boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                          region_name="us-east-1")
    s3 = admin.client("s3", endpoint_url=server.url)
    s3.create_bucket(Bucket=bucket)
    for object_key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=object_key, Body=body)
    admin_iam = admin.client("iam", endpoint_url=server.url)
    admin_iam.create_user(UserName="task-role")
    admin_iam.put_user_policy(UserName="task-role", PolicyName=aws_plan.TASK_POLICY_NAME,
                              PolicyDocument=aws_plan.canonical_json(policy))
    role_key = admin_iam.create_access_key(UserName="task-role")["AccessKey"]
    return {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": role_key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": role_key["SecretAccessKey"], "AWS_REGION": "us-east-1"}


def validation_task_reports(platform: EcsPlatform, name: str, lines: list[str]) -> None:
    """Stand in for the validation container in moto (which runs none): its awslogs stream gets ``lines``."""
    logs = boto3.client("logs")

    def wrote(parsed, **_):
        for task in parsed.get("tasks") or []:
            stream = f"{LOG_STREAM_PREFIX}/{CONTAINER_NAME}/{task['taskArn'].rsplit('/', 1)[-1]}"
            logs.create_log_stream(logGroupName=f"/dagster/repos/{name}", logStreamName=stream)
            now = int(time.time() * 1000)
            logs.put_log_events(logGroupName=f"/dagster/repos/{name}", logStreamName=stream,
                                logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)])

    platform.gateway.ecs.meta.events.register("after-call.ecs.RunTask", wrote)


def test_a_mounted_repo_on_ecs_fetches_its_archive_with_its_own_role_only(
    moto, moto_factory, tmp_path, git_remote, repo_names, validator_reports
):
    from conftest import free_port
    from dagster._grpc.client import DagsterGrpcClient

    name = unique_name("em")
    repo_names.append(name)
    settings = settings_for(tmp_path, {**make_network(), **engine_env()}, META_DEPLOYER_ECS_VALIDATE_TIMEOUT="30")
    bootstrap(settings, log=lambda _: None)
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="mounted", value=1)})
    spec = spec_for(name, remote.url, python_file="definitions.py")
    co = checkout(settings, spec)
    platform = EcsPlatform(settings)
    log = Collect()

    artifact = platform.build(spec, co, log)
    assert artifact.metadata["mounted"] and ":deps-" in artifact.ref
    key = contract.code_archive_key(name, co.commit)
    assert artifact.metadata["code_archive"] == f"s3://{settings.bucket}/{key}"
    s3 = boto3.client("s3")
    stored = s3.get_object(Bucket=settings.bucket, Key=key)
    data = stored["Body"].read()
    assert hashlib.sha256(data).hexdigest() == artifact.metadata["code_sha256"] == stored["Metadata"]["sha256"]
    assert data == codearchive.make_archive(co.path)  # deterministic: the same commit, the same bytes
    published = platform.publish(spec, artifact, log)
    assert published.metadata["code_sha256"] == artifact.metadata["code_sha256"]

    validation_task_reports(platform, name, validator_reports["ok"][0])
    served = platform.serve(spec, published, co, log)
    assert served.metadata["dagster_version"] == versions.pin("dagster")
    ecs = boto3.client("ecs")
    revision = ecs.describe_task_definition(taskDefinition=served.metadata["task_definition"])["taskDefinition"]
    [container] = revision["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env[contract.ENV_CODE_ARCHIVE] == artifact.metadata["code_archive"]
    assert env[contract.ENV_CODE_SHA256] == artifact.metadata["code_sha256"]
    # Deployed: the dry run of the same commit (which builds nothing) plans nothing.
    assert not platform.plan_for(spec, None, co).mutating

    # Start the dependency image as Fargate would, with the repo's task role's credentials only: its live
    # policy, on an IAM-enforcing S3 holding this archive and another repo's.
    other = contract.code_archive_key("other", co.commit)
    policy = platform.gateway.get_role_policy(served.metadata["task_role"], aws_plan.TASK_POLICY_NAME)
    aws = role_only_credentials(moto_factory, policy, settings.bucket, {key: data, other: data})
    client = images.docker_client(settings.env)
    port = free_port()
    started = client.containers.run(
        published.ref, location.entrypoint_command("127.0.0.1", port), environment={**env, **aws},
        network_mode="host", detach=True, labels={"meta-deployer.repo": name},
    )
    try:
        grpc = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.monotonic() + 120
        while True:
            try:
                repositories = grpc.list_repositories()
                break
            except Exception:
                started.reload()
                assert started.status == "running", started.logs().decode(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "the code server never answered"
                time.sleep(1)
        assert "SerializableErrorInfo" not in repositories and "__repository__" in repositories
        # The code came from the archive (the image has none): unpacked under its sha256, checked.
        listing = started.exec_run(["ls", f"/tmp/meta-deployer-code/{env[contract.ENV_CODE_SHA256]}"]).output.decode()
        assert "definitions.py" in listing, listing
        # With the same credentials, the runtime in the image cannot read another repo's code archive.
        probe = (
            "import json, sys\n"
            "from meta_deployer_runtime.code import CodeArchiveError, fetch_code\n"
            "try:\n"
            f"    fetch_code({{'{contract.ENV_CODE_ARCHIVE}': sys.argv[1], '{contract.ENV_CODE_SHA256}': sys.argv[2],"
            f" '{contract.ENV_CODE_DIR}': '/tmp/probe'}})\n"
            "except CodeArchiveError as exc:\n"
            "    print('REFUSED', exc)\n"
            "else:\n"
            "    print('READ')\n"
        )
        result = started.exec_run(["python", "-c", probe, f"s3://{settings.bucket}/{other}", env[contract.ENV_CODE_SHA256]])
        output = result.output.decode(errors="replace")
        assert "REFUSED" in output and "AccessDenied" in output, output
        own = started.exec_run(["python", "-c", probe, env[contract.ENV_CODE_ARCHIVE], env[contract.ENV_CODE_SHA256]])
        assert "READ" in own.output.decode(errors="replace"), own.output
    finally:
        started.remove(force=True)
