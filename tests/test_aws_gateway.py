"""The AWS gateway against a moto server: idempotent creates and deletes, errors that say where."""

from __future__ import annotations

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.errors import AwsOperationError, TransientAwsError


def test_clients_use_botocore_retries_and_the_endpoint(moto):
    gw = AwsGateway(retry_mode="adaptive", max_attempts=4)
    for client in (gw.ecs, gw.iam, gw.logs, gw.servicediscovery, gw.elbv2, gw.s3, gw.sts, gw.ecr, gw.secretsmanager):
        assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 4}
        assert client.meta.endpoint_url == moto.url
    assert AwsGateway().ecs.meta.config.retries["mode"] == "standard"


def test_already_exists_and_not_found_are_success(moto):
    gw = AwsGateway()
    gw.create_log_group("/dagster/repos/x", {"k": "v"})
    gw.create_log_group("/dagster/repos/x", {"k": "v"})
    gw.delete_log_group("/dagster/repos/x")
    gw.delete_log_group("/dagster/repos/x")
    trust = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
    gw.create_role("r", trust, {}, "d")
    gw.create_role("r", trust, {}, "d")
    gw.delete_role_policy("r", "nope")
    gw.delete_role("r")
    gw.delete_role("r")
    assert gw.get_role("r") is None
    assert gw.get_log_group("/dagster/repos/x") is None
    assert gw.latest_task_definition("dagster-repo-none") is None
    assert gw.get_service("no-cluster", "svc") is None
    gw.delete_service("no-cluster", "svc")
    gw.delete_ecr_repository("dagster/none")
    assert gw.recent_log_events("/missing", 10) == []
    assert gw.mutating_calls()  # the calls were recorded


def test_other_errors_name_the_call_and_the_resource(moto):
    gw = AwsGateway()
    with pytest.raises(AwsOperationError) as info:
        gw.put_retention("/dagster/repos/missing", 30)
    assert str(info.value).startswith("AWS put_retention_policy on log group /dagster/repos/missing failed: ResourceNotFoundException")
    assert info.value.code == "ResourceNotFoundException"
    assert not isinstance(info.value, TransientAwsError)


@pytest.mark.parametrize("attempts_allowed", [1, 2])
def test_throttling_is_retried_by_botocore_then_a_transient_error(moto, attempts_allowed):
    gw = AwsGateway(max_attempts=attempts_allowed)
    attempts = []

    def throttle(request, **_):
        attempts.append(request.url)
        body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))

    gw.ecs.meta.events.register("before-send.ecs.DescribeClusters", throttle)
    with pytest.raises(TransientAwsError, match="describe_clusters on ECS cluster dagster failed: ThrottlingException"):
        gw.get_cluster("dagster")
    assert len(attempts) == attempts_allowed


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body

    def read(self, *_):
        return self.body


def test_pure_modules_do_not_import_boto3():
    import subprocess
    import sys

    code = "import sys, meta_deployer.platforms.aws.plan, meta_deployer.platforms.aws.settings; sys.exit('boto3' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    _ = boto3  # the tests themselves may use boto3
