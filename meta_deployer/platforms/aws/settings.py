"""Settings of the ``ecs`` platform: :class:`EcsSettings`, defined with every other setting in
:mod:`meta_deployer.settings` and re-exported here beside the platform that uses them.

Build them from the environment with ``Settings.from_env(env).ecs`` (or
``EcsSettings.from_env(env)``); README.md ("The ECS platform") lists them.
``AWS_REGION``/``AWS_DEFAULT_REGION`` are not read here: boto3 reads them itself.
"""

from __future__ import annotations

from meta_deployer.settings import (
    DEFAULT_CLUSTER,
    DEFAULT_DESIRED_COUNT,
    DEFAULT_ECS_POLL_INTERVAL_S as DEFAULT_POLL_INTERVAL_S,
    DEFAULT_EXECUTION_ROLE_NAME,
    DEFAULT_HEALTH_CHECK_GRACE_S,
    DEFAULT_KEEP_REVISIONS,
    DEFAULT_LOG_RETENTION_DAYS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_NAMESPACE,
    DEFAULT_RETRY_MODE,
    DEFAULT_STABILITY_TIMEOUT_S,
    DEFAULT_TEMP_EXPIRY_DAYS,
    LOG_RETENTION_CHOICES,
    RETRY_MODES,
    EcsSettings,
)

__all__ = [
    "DEFAULT_CLUSTER",
    "DEFAULT_DESIRED_COUNT",
    "DEFAULT_EXECUTION_ROLE_NAME",
    "DEFAULT_HEALTH_CHECK_GRACE_S",
    "DEFAULT_KEEP_REVISIONS",
    "DEFAULT_LOG_RETENTION_DAYS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_NAMESPACE",
    "DEFAULT_POLL_INTERVAL_S",
    "DEFAULT_RETRY_MODE",
    "DEFAULT_STABILITY_TIMEOUT_S",
    "DEFAULT_TEMP_EXPIRY_DAYS",
    "LOG_RETENTION_CHOICES",
    "RETRY_MODES",
    "EcsSettings",
]
