"""The shipped production instance config (examples/dagster.prod.yaml) is valid for Dagster 1.13."""

from __future__ import annotations

from pathlib import Path

import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config_schema
from dagster_aws.ecs import EcsRunLauncher

from meta_deployer_runtime.compute_logs import RepoComputeLogManager

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "dagster.prod.yaml"


def test_prod_instance_config_validates(monkeypatch):
    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "META_DEPLOYER_BUCKET"):
        monkeypatch.setenv(var, "x")
    monkeypatch.setenv("DAGSTER_PG_PORT", "5432")
    config = yaml.safe_load(EXAMPLE.read_text())
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors
    assert config["run_launcher"]["class"] == "EcsRunLauncher"
    launcher = process_config(EcsRunLauncher.config_type(), config["run_launcher"]["config"])
    assert launcher.success, launcher.errors
    assert config["compute_logs"]["class"] == "RepoComputeLogManager"
    logs = process_config(RepoComputeLogManager.config_type(), config["compute_logs"]["config"])
    assert logs.success, logs.errors
    assert "postgres" in config["storage"]
