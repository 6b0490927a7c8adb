"""Every repo task definition carries what its runs need to open the instance (META_DEPLOYER_PG_SECRET_ARN):
the Postgres fields as ECS ``secrets`` by ARN, never as values, readable by the repo's own execution role."""

from __future__ import annotations

import json

import boto3
import pytest

from meta_deployer.platforms.aws.bootstrap import bootstrap
from meta_deployer.platforms.aws.resources.execution_role import EXECUTION_POLICY_NAME
from meta_deployer.platforms.ecs import EcsPlatform
from test_ecs_support import CallCounter, checkout_for, make_network, published_for, settings_for, spec_for

PG_FIELDS = {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD"}


def log(line: str) -> None:
    pass


@pytest.fixture
def pg_arn(moto):
    secret = {"host": "db.internal", "port": "5432", "dbname": "dagster", "username": "dagster", "password": "s3cr3t-pw"}
    created = boto3.client("secretsmanager").create_secret(Name="dagster/platform/postgres", SecretString=json.dumps(secret))
    return created["ARN"]


@pytest.fixture
def platform(moto, pg_arn, tmp_path):
    settings = settings_for(tmp_path, make_network(), META_DEPLOYER_PG_SECRET_ARN=pg_arn)
    bootstrap(settings, log=log)
    return EcsPlatform(settings)


def deploy(platform, tmp_path, spec=None):
    spec = spec or spec_for("sales", secrets=[{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/sales/db-AbCdEf"}])
    return platform.serve(spec, published_for(spec.name), checkout_for(spec.name, tmp_path), log)


def test_the_task_definition_injects_the_pg_fields_by_arn_only(platform, pg_arn, tmp_path):
    deploy(platform, tmp_path)
    td = boto3.client("ecs").describe_task_definition(taskDefinition="dagster-repo-sales")["taskDefinition"]
    container = td["containerDefinitions"][0]
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert {name: secrets[name] for name in PG_FIELDS} == {
        "DAGSTER_PG_HOST": f"{pg_arn}:host::", "DAGSTER_PG_PORT": f"{pg_arn}:port::", "DAGSTER_PG_DB": f"{pg_arn}:dbname::",
        "DAGSTER_PG_USERNAME": f"{pg_arn}:username::", "DAGSTER_PG_PASSWORD": f"{pg_arn}:password::",
    }
    assert "DB_PASSWORD" in secrets  # the spec's own secrets are kept
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert not PG_FIELDS & set(env)
    # No value of the secret appears anywhere in the definition (environment, container context, command).
    text = json.dumps(td)
    assert "s3cr3t-pw" not in text and "db.internal" not in text
    context = json.loads(env["DAGSTER_CONTAINER_CONTEXT"])["ecs"]
    assert {s["name"] for s in context["secrets"]} >= PG_FIELDS


def test_the_execution_role_reads_that_one_secret(platform, pg_arn, tmp_path):
    deploy(platform, tmp_path)
    document = boto3.client("iam").get_role_policy(RoleName="dagster-exec-sales", PolicyName=EXECUTION_POLICY_NAME)["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    pg = [s for s in document["Statement"] if s["Sid"] == "ReadInstancePostgresSecret"]
    assert pg == [{"Sid": "ReadInstancePostgresSecret", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": [pg_arn]}]


def test_an_unchanged_deploy_with_the_pg_secret_makes_no_mutating_call(platform, tmp_path):
    deploy(platform, tmp_path)
    calls = CallCounter(platform.gateway)
    served = deploy(platform, tmp_path)
    assert calls.mutating == []
    assert not served.changed


def test_without_the_setting_no_pg_secret_is_injected(moto, tmp_path):
    settings = settings_for(tmp_path, make_network())
    bootstrap(settings, log=log)
    deploy(EcsPlatform(settings), tmp_path, spec_for("sales"))
    container = boto3.client("ecs").describe_task_definition(taskDefinition="dagster-repo-sales")["taskDefinition"]["containerDefinitions"][0]
    assert not {s["name"] for s in container.get("secrets", [])} & PG_FIELDS
