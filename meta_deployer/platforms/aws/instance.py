"""The production Dagster instance (``dagster.yaml``), rendered from the settings (pure).

The platform's webserver, daemon and every run task open the same instance::

    render_instance_config(settings) -> dict        (instance_yaml(settings) -> the file's text)
      storage          postgres, each field read from the environment: DAGSTER_PG_HOST, _PORT, _DB,
                       _USERNAME, _PASSWORD, which ECS injects from META_DEPLOYER_PG_SECRET_ARN
                       (``pg_secrets(arn)``: one ``secrets`` entry ``<arn>:<json-key>::`` per field)
      run_launcher     dagster_aws.ecs EcsRunLauncher: a run is a Fargate task of its location's
                       task definition (the repo's, through DAGSTER_CONTAINER_CONTEXT)
      run_coordinator  QueuedRunCoordinator, at most one deploy run per repo (tag meta_deployer/repo)
      compute_logs     meta_deployer_runtime.compute_logs.RepoComputeLogManager in META_DEPLOYER_BUCKET
      run_monitoring   on, so a run task that dies is marked failed

Nothing here reads the environment or talks to AWS: the same settings always render the same
text, so ``examples/dagster.prod.yaml`` is this rendering (``meta-deployer instance-config``
prints it; a test keeps the two equal) and the platform image bakes it in.
"""

from __future__ import annotations

from typing import Any

import yaml

from meta_deployer import naming
from meta_deployer.settings import PG_SECRET_KEYS, EcsSettings

#: Concurrent runs the queue lets through (deploy runs and user runs alike).
MAX_CONCURRENT_RUNS = 20
#: Seconds between uploads of a running step's compute logs.
COMPUTE_LOG_UPLOAD_INTERVAL_S = 30
#: Run monitoring: a run task that has not started after this many seconds is failed.
RUN_START_TIMEOUT_S = 600
RUN_MONITORING_POLL_S = 60
#: dagster-postgres installs psycopg2, and SQLAlchemy 2.1 takes psycopg (3) for a bare ``postgresql://``.
PG_SCHEME = "postgresql+psycopg2"
#: Tag every run task gets (EcsRunLauncher ``run_ecs_tags``).
MANAGED_BY_TAG = {"key": "managed-by", "value": "meta-deployer"}

HEADER = """\
# The production Dagster instance of the ECS platform (META_DEPLOYER_PLATFORM=ecs), rendered by
# meta_deployer/platforms/aws/instance.py from the settings: `meta-deployer instance-config` prints
# it; do not edit by hand (tests/test_instance_config.py keeps this file equal to the rendering).
#
# The webserver, the daemon and every run task open it. ECS injects the Postgres fields
# (DAGSTER_PG_HOST, _PORT, _DB, _USERNAME, _PASSWORD) as `secrets` from the one Secrets Manager
# secret META_DEPLOYER_PG_SECRET_ARN (`<arn>:<json-key>::`), never as plain values; the bucket is
# META_DEPLOYER_BUCKET's (this file: the default). Runs use the repo's task definition family (its role, image,
# secrets and log group) through the DAGSTER_CONTAINER_CONTEXT its code server reports; runs of
# the meta_deployer location copy the task they were launched from (use_current_ecs_task_config).
# At most one deploy run per repo at a time (tag meta_deployer/repo); compute logs are filed per
# repo in the bucket (repos/<name>/logs/, else system/logs/), the only prefix a repo's role may write.
"""


def pg_secrets(arn: str) -> list[dict[str, str]]:
    """The ECS ``secrets`` entries that inject each Postgres field of the secret at ``arn``, sorted by name.

    ``<arn>:<json-key>::`` is ECS's form for one JSON key of a Secrets Manager secret, at the
    secret's current version (the two empty fields are the version stage and id):
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-secrets-manager.html
    """
    return [{"name": name, "valueFrom": f"{arn}:{key}::"} for name, key in sorted(PG_SECRET_KEYS.items())]


def _env(name: str) -> dict[str, str]:
    return {"env": name}


def render_instance_config(settings: EcsSettings) -> dict[str, Any]:
    """The instance configuration for ``settings`` (what ``dagster.yaml`` holds), as data."""
    return {
        "telemetry": {"enabled": False},
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": _env("DAGSTER_PG_HOST"),
                    "port": _env("DAGSTER_PG_PORT"),
                    "db_name": _env("DAGSTER_PG_DB"),
                    "username": _env("DAGSTER_PG_USERNAME"),
                    "password": _env("DAGSTER_PG_PASSWORD"),
                    "scheme": PG_SCHEME,
                }
            }
        },
        "run_launcher": {
            "module": "dagster_aws.ecs",
            "class": "EcsRunLauncher",
            "config": {
                "use_current_ecs_task_config": True,
                # Secrets come per repo (config.yml's valueFrom ARNs, and the Postgres fields), never
                # from a search of every secret tagged for Dagster.
                "secrets_tag": None,
                "run_ecs_tags": [dict(MANAGED_BY_TAG)],
            },
        },
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": MAX_CONCURRENT_RUNS,
                "tag_concurrency_limits": [
                    {"key": naming.RUN_TAG_KEY, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
                ],
            },
        },
        "compute_logs": {
            "module": "meta_deployer_runtime.compute_logs",
            "class": "RepoComputeLogManager",
            "config": {"bucket": settings.bucket, "upload_interval": COMPUTE_LOG_UPLOAD_INTERVAL_S},
        },
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": RUN_START_TIMEOUT_S,
            "max_resume_run_attempts": 0,
            "poll_interval_seconds": RUN_MONITORING_POLL_S,
        },
        "run_retries": {"enabled": True, "max_retries": 0},
    }


def instance_yaml(settings: EcsSettings) -> str:
    """``dagster.yaml``'s text for ``settings``: a comment header, then the configuration."""
    return HEADER + "\n" + yaml.safe_dump(render_instance_config(settings), sort_keys=False, default_flow_style=False)
