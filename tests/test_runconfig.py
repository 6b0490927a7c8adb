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


def test_rollback_run_config_is_valid_and_bad_targets_are_refused_before_anything_runs(capsys):
    from meta_deployer import cli
    from meta_deployer.history import DeploymentEntry, find
    from meta_deployer.runconfig import rollback_run_config

    config = rollback_run_config("sales", "0f8e2c1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
    assert validate_run_config(d.rollback_repo, config)["ops"]["rollback_checkout"]["config"]["to"].startswith("0f8e")
    assert cli.main(["run-config", "rollback", "--name", "sales", "--to", "abcdef1"]) == 0
    assert "to: abcdef1" in capsys.readouterr().out
    for bad in ("HEAD~1", "abc", "$(id)", "ABCDEF1"):
        assert cli.main(["run-config", "rollback", "--name", "sales", "--to", bad]) == 2
        assert "TO" in capsys.readouterr().err
    assert cli.main(["run-config", "rollback", "--name", "sales"]) == 2

    old = DeploymentEntry("run-1", "a" * 40, "v1", "", "1.13.27", "dev", "main", 1.0)
    new = DeploymentEntry("run-2", "ab" + "c" * 38, "v2", "", "1.13.27", "dev", "main", 2.0)
    assert find([old, new], "run-1") == old and find([old, new], "aaaaaaa") == old
    assert find([old, new], "abcc") is None and find([old, new], "ffffffff") is None
