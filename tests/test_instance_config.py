"""The production instance configuration (platforms/aws/instance.py): rendered from the settings, loaded
in a real DagsterInstance against the local Postgres, and the shipped example is that rendering."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

import platformkit

from meta_deployer.platforms.aws.instance import instance_yaml, pg_secrets, render_instance_config
from meta_deployer.settings import PG_SECRET_KEYS, EcsSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "dagster.prod.yaml"
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/platform/postgres-AbC123"


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A database of its own on the local Postgres (tests/platformkit.py)."""
    with platformkit.fresh_database("md_instance") as url:
        yield url


def test_the_example_is_the_rendering_with_default_settings():
    assert EXAMPLE.read_text() == instance_yaml(EcsSettings())


def test_the_cli_prints_the_rendering_of_the_environment(tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "META_DEPLOYER_BUCKET": "acme-dagster"}
    out = subprocess.run(
        [sys.executable, "-m", "meta_deployer.cli", "instance-config"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out == instance_yaml(EcsSettings(bucket="acme-dagster"))
    assert yaml.safe_load(out)["compute_logs"]["config"]["bucket"] == "acme-dagster"


def test_postgres_comes_only_from_the_environment_never_a_value():
    db = render_instance_config(EcsSettings())["storage"]["postgres"]["postgres_db"]
    fields = {k: v for k, v in db.items() if k != "scheme"}
    assert {v["env"] for v in fields.values()} == set(PG_SECRET_KEYS)
    assert all(set(v) == {"env"} for v in fields.values())


def test_pg_secrets_name_one_json_key_each_at_the_current_version():
    assert pg_secrets(ARN) == [
        {"name": "DAGSTER_PG_DB", "valueFrom": f"{ARN}:dbname::"},
        {"name": "DAGSTER_PG_HOST", "valueFrom": f"{ARN}:host::"},
        {"name": "DAGSTER_PG_PASSWORD", "valueFrom": f"{ARN}:password::"},
        {"name": "DAGSTER_PG_PORT", "valueFrom": f"{ARN}:port::"},
        {"name": "DAGSTER_PG_USERNAME", "valueFrom": f"{ARN}:username::"},
    ]


def test_the_rendering_loads_in_a_real_instance_on_postgres(tmp_path, monkeypatch, moto, fresh_database):
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.ecs import EcsRunLauncher
    from dagster_postgres import PostgresRunStorage

    from meta_deployer_runtime.compute_logs import RepoComputeLogManager

    url = urlparse(fresh_database)
    for var, value in {
        "DAGSTER_PG_HOST": url.hostname, "DAGSTER_PG_PORT": str(url.port), "DAGSTER_PG_DB": url.path.lstrip("/"),
        "DAGSTER_PG_USERNAME": url.username, "DAGSTER_PG_PASSWORD": url.password,
    }.items():
        monkeypatch.setenv(var, value)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(EcsSettings(bucket="acme-dagster")))

    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.get_runs() == []  # the schema was created in the fresh database
        launcher = instance.run_launcher
        assert isinstance(launcher, EcsRunLauncher)
        assert launcher.use_current_ecs_task_config is True
        assert launcher.secrets_tags == []  # no search of every secret tagged for Dagster
        assert launcher.run_ecs_tags == [{"key": "managed-by", "value": "meta-deployer"}]
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert limits == [{"key": "meta_deployer/repo", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
        manager = instance.compute_log_manager
        # RepoComputeLogManager builds its S3 variant when a bucket is configured.
        assert manager.inst_data.class_name == RepoComputeLogManager.__name__
        assert manager.inst_data.module_name == RepoComputeLogManager.__module__
        assert type(manager).__name__ == "S3RepoComputeLogManager" and manager._s3_bucket == "acme-dagster"
        assert instance.run_monitoring_enabled


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (ARN, True),
        ("arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:pg-Ab12Cd", True),
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:pg", False),  # partial: no random suffix
        (f"{ARN}:password::", False),  # a JSON key is ours to add, per field
        ("arn:aws:ssm:us-east-1:123456789012:parameter/dagster/pg-Ab12Cd", False),  # SSM holds no JSON keys for ECS
        ("arn:aws:secretsmanager:us-east-1:12345678901:secret:pg-Ab12Cd", False),  # account ids have 12 digits
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:pg-Ab12C", False),
        ("dagster/platform/postgres", False),  # a name: the execution role needs the ARN
    ],
)
def test_the_pg_secret_setting_takes_a_full_secrets_manager_arn_only(value, ok):
    from meta_deployer.errors import SettingsError
    from meta_deployer.settings import Settings

    if ok:
        assert Settings.from_env({"META_DEPLOYER_PG_SECRET_ARN": value}).ecs.pg_secret_arn == value
    else:
        with pytest.raises(SettingsError, match="META_DEPLOYER_PG_SECRET_ARN"):
            Settings.from_env({"META_DEPLOYER_PG_SECRET_ARN": value})


def test_an_unset_pg_secret_keeps_the_deploy_fingerprint_of_older_settings():
    import hashlib
    import json

    from meta_deployer.settings import ECS_TRANSIENT_FIELDS

    base = EcsSettings()
    before = base.model_dump(exclude={*ECS_TRANSIENT_FIELDS, "pg_secret_arn"})  # the fields before this setting
    assert base.deploy_fingerprint() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    with_arn = base.replace(pg_secret_arn=ARN)
    assert with_arn.deploy_fingerprint() != base.deploy_fingerprint()
