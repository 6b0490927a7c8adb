"""A spec survives the trip through run config unchanged (what the sensor, the CLI and the UI send)."""

from __future__ import annotations

from dagster import validate_run_config

from meta_deployer import definitions as d
from meta_deployer.runconfig import deploy_run_config, run_config_from_spec, spec_dict_from_run_config
from meta_deployer.spec import parse_spec


def test_every_field_survives_the_run_config_round_trip():
    spec = parse_spec(
        {
            "name": "sales",
            "git_url": "https://example.com/sales.git",
            "branch": "dev",
            "module_name": "sales.definitions",
            "working_directory": "pipelines",
            "resources": {"cpu": 512, "memory": 2048},
            "s3_prefix": "repos/sales",
            "environment": [{"name": "REGION", "value": "eu-west-1"}],
            "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dagster/sales/db"}],
            "access": {"read": ["finance"]},
        },
        "config.yml",
    )
    back = parse_spec(spec_dict_from_run_config(run_config_from_spec(spec)), "run config")
    assert back == spec
    assert back.s3_prefix == "repos/sales"
    assert validate_run_config(d.add_repo, deploy_run_config(spec))
