"""Settings of the ``ecs`` platform, read from environment variables (pure).

Every setting has a named default below; README.md ("ECS platform") lists
them. ``AWS_REGION``/``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL`` are not
read here: boto3 reads them itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from meta_deployer.errors import SettingsError
from meta_deployer.settings import DEFAULT_BUCKET, env_number

DEFAULT_CLUSTER = "dagster"
DEFAULT_NAMESPACE = "local"
#: Shared execution role that ``make bootstrap`` creates (pulls images, writes logs, reads secrets).
DEFAULT_EXECUTION_ROLE_NAME = "dagster-ecs-execution"
DEFAULT_LOG_RETENTION_DAYS = 30
DEFAULT_DESIRED_COUNT = 1
DEFAULT_STABILITY_TIMEOUT_S = 600.0
DEFAULT_POLL_INTERVAL_S = 10.0
DEFAULT_HEALTH_CHECK_GRACE_S = 120
DEFAULT_KEEP_REVISIONS = 3
DEFAULT_RETRY_MODE = "standard"
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_TEMP_EXPIRY_DAYS = 7
RETRY_MODES = ("standard", "adaptive")
#: CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_CHOICES = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(sorted({v.strip() for v in (value or "").split(",") if v.strip()}))


@dataclass(frozen=True)
class EcsSettings:
    """Where and how the ``ecs`` platform deploys; build with :meth:`from_env`."""

    cluster: str = DEFAULT_CLUSTER
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    vpc_id: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    execution_role_arn: str | None = None  # None: the role make bootstrap creates
    bucket: str = DEFAULT_BUCKET
    registry: str | None = None  # None: the account's ECR
    lb_listener_arn: str | None = None
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS
    desired_count: int = DEFAULT_DESIRED_COUNT
    stability_timeout_s: float = DEFAULT_STABILITY_TIMEOUT_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    health_check_grace_s: int = DEFAULT_HEALTH_CHECK_GRACE_S
    keep_revisions: int = DEFAULT_KEEP_REVISIONS
    retry_mode: str = DEFAULT_RETRY_MODE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    temp_expiry_days: int = DEFAULT_TEMP_EXPIRY_DAYS

    @classmethod
    def from_env(cls, env: Mapping[str, str], bucket: str | None = None) -> "EcsSettings":
        """Read the ECS settings from ``env``; ``bucket`` defaults to ``META_DEPLOYER_BUCKET``."""

        def number(var: str, default: float, kind: type = int, minimum: float = 0) -> Any:
            return env_number(env, var, default, kind, minimum)

        retention = int(number("META_DEPLOYER_LOG_RETENTION_DAYS", DEFAULT_LOG_RETENTION_DAYS, minimum=1))
        if retention not in LOG_RETENTION_CHOICES:
            raise SettingsError(
                f"META_DEPLOYER_LOG_RETENTION_DAYS={retention} is not a CloudWatch retention; "
                f"use one of {', '.join(map(str, LOG_RETENTION_CHOICES))}"
            )
        retry_mode = env.get("META_DEPLOYER_AWS_RETRY_MODE") or DEFAULT_RETRY_MODE
        if retry_mode not in RETRY_MODES:
            raise SettingsError(f"META_DEPLOYER_AWS_RETRY_MODE={retry_mode!r}: use one of {', '.join(RETRY_MODES)}")
        return cls(
            cluster=env.get("META_DEPLOYER_ECS_CLUSTER") or DEFAULT_CLUSTER,
            subnets=_csv(env.get("META_DEPLOYER_SUBNETS")),
            security_groups=_csv(env.get("META_DEPLOYER_SECURITY_GROUPS")),
            vpc_id=env.get("META_DEPLOYER_VPC_ID") or None,
            namespace=env.get("META_DEPLOYER_NAMESPACE") or DEFAULT_NAMESPACE,
            execution_role_arn=env.get("META_DEPLOYER_EXECUTION_ROLE_ARN") or None,
            bucket=bucket or env.get("META_DEPLOYER_BUCKET") or DEFAULT_BUCKET,
            registry=(env.get("META_DEPLOYER_REGISTRY") or "").rstrip("/") or None,
            lb_listener_arn=env.get("META_DEPLOYER_LB_LISTENER_ARN") or None,
            log_retention_days=retention,
            desired_count=int(number("META_DEPLOYER_ECS_DESIRED_COUNT", DEFAULT_DESIRED_COUNT)),
            stability_timeout_s=float(
                number("META_DEPLOYER_ECS_STABILITY_TIMEOUT", DEFAULT_STABILITY_TIMEOUT_S, float)
            ),
            poll_interval_s=float(number("META_DEPLOYER_ECS_POLL_INTERVAL", DEFAULT_POLL_INTERVAL_S, float)),
            health_check_grace_s=int(number("META_DEPLOYER_ECS_HEALTH_CHECK_GRACE", DEFAULT_HEALTH_CHECK_GRACE_S)),
            keep_revisions=int(number("META_DEPLOYER_ECS_KEEP_REVISIONS", DEFAULT_KEEP_REVISIONS, minimum=1)),
            retry_mode=retry_mode,
            max_attempts=int(number("META_DEPLOYER_AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, minimum=1)),
            temp_expiry_days=int(number("META_DEPLOYER_TEMP_EXPIRY_DAYS", DEFAULT_TEMP_EXPIRY_DAYS, minimum=1)),
        )

    def deploy_fingerprint(self) -> str:
        """A hash of the settings that change what a deploy creates (not timeouts or retries)."""
        data = asdict(self)
        for transient in ("stability_timeout_s", "poll_interval_s", "retry_mode", "max_attempts", "temp_expiry_days"):
            data.pop(transient)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def require_network(self) -> None:
        """Raise SettingsError unless subnets and security groups are set (needed to create a service)."""
        missing = [
            var
            for var, value in (("META_DEPLOYER_SUBNETS", self.subnets), ("META_DEPLOYER_SECURITY_GROUPS", self.security_groups))
            if not value
        ]
        if missing:
            raise SettingsError(
                f"{' and '.join(missing)} must be set for the ecs platform "
                "(comma-separated private subnet and security group ids)"
            )
