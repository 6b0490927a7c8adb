"""What the platform's kinds share (pure): names, tags and the inputs ``make platform`` plans from.

Names (none can be produced by a repo: repo names give ``dagster-repo-*``, ``dagster-exec-*``,
``dagster-<name>`` target groups and ``/dagster/repos/*`` log groups; ``meta-deployer`` is a reserved
repo name):

=====================  ==================================================================
ECS services           ``dagster-webserver``, ``dagster-daemon``, ``meta-deployer``
task families / roles  ``dagster-platform-<webserver|daemon|deployer>``
execution role         ``dagster-platform-execution``
log groups             ``/dagster/platform/<webserver|daemon|deployer>``
Cloud Map              ``meta-deployer-service.<namespace>`` (the deployer's gRPC, port 4266)
EFS                    file system and access point ``dagster-platform-workspace`` (``/workspace``)
security groups        ``dagster-platform-tasks``, ``dagster-platform-efs``, ``dagster-platform-webserver``
target group           ``meta-deployer-webserver`` (HTTP 3000, health ``/server_info``)
=====================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from meta_deployer.platforms.aws.common import PlanError, tags
from meta_deployer.settings import EcsSettings, PlatformAwsSettings

TAG_KEY = "meta-deployer:platform"
WEBSERVER, DAEMON, DEPLOYER = "webserver", "daemon", "deployer"
COMPONENTS = (WEBSERVER, DAEMON, DEPLOYER)
#: ECS service name of each component.
SERVICE_NAMES = {WEBSERVER: "dagster-webserver", DAEMON: "dagster-daemon", DEPLOYER: "meta-deployer"}
WEBSERVER_PORT = 3000
DEPLOYER_PORT = 4266
NFS_PORT = 2049
WORKSPACE_MOUNT = "/workspace"
WORKSPACE_FILE = f"{WORKSPACE_MOUNT}/workspace.yaml"
WORKSPACE_NAME = "dagster-platform-workspace"
EXECUTION_ROLE = "dagster-platform-execution"
DEPLOYER_CLOUD_MAP = "meta-deployer-service"
TARGET_GROUP = "meta-deployer-webserver"
SG_TASKS, SG_EFS, SG_WEBSERVER = "dagster-platform-tasks", "dagster-platform-efs", "dagster-platform-webserver"
#: The platform image's repository (``platforms/platform_image.py`` builds and pushes it).
IMAGE_REPOSITORY = "dagster/platform"
PG_SECRET_REQUIRED = (
    "make platform needs META_DEPLOYER_PG_SECRET_ARN: the full ARN of the Secrets Manager secret holding the "
    "instance's Postgres as JSON (host, port, dbname, username, password); see README \"Production on AWS\""
)


def family(component: str) -> str:
    """``dagster-platform-<component>``: the task definition family (and the task role)."""
    return f"dagster-platform-{component}"


role = family


def log_group(component: str) -> str:
    """``/dagster/platform/<component>``."""
    return f"/dagster/platform/{component}"


def platform_tags(component: str) -> dict[str, str]:
    """Tags on every resource ``make platform`` creates: ``meta-deployer:platform=<component>``."""
    return tags({TAG_KEY: component})


@dataclass(frozen=True)
class PlatformInputs:
    """Everything the platform's kinds derive their desired values from."""

    settings: EcsSettings
    platform: PlatformAwsSettings
    region: str
    account: str
    partition: str = "aws"
    #: The CodeBuild project the deployer starts builds in (``META_DEPLOYER_BUILDER=codebuild``), else None.
    codebuild_project: str | None = None
    #: The platform image by digest (``platform_image.ensure_platform_image``'s ``pinned``); None: the setting's.
    image_ref: str | None = None
    #: The deployer's settings besides the platform's own (images, the configuration repository), as
    #: environment variables: derived from the settings by ``platform.inputs_for``, never a secret value.
    deployer_settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def image(self) -> str:
        """The platform image by digest: the one ``make platform`` built, else ``META_DEPLOYER_PLATFORM_IMAGE``."""
        image = self.image_ref or self.platform.image
        if not image:
            raise PlanError("the platform image is not known: make platform builds it, or set META_DEPLOYER_PLATFORM_IMAGE")
        return image

    @property
    def pg_secret_arn(self) -> str:
        """``META_DEPLOYER_PG_SECRET_ARN``: the instance's Postgres (every platform task reads it)."""
        if not self.settings.pg_secret_arn:
            raise PlanError(PG_SECRET_REQUIRED)
        return self.settings.pg_secret_arn

    def role_arn(self, name: str) -> str:
        """The ARN of IAM role ``name`` in this account."""
        return f"arn:{self.partition}:iam::{self.account}:role/{name}"

    def arn(self, service: str, resource: str) -> str:
        """``arn:<partition>:<service>:<region>:<account>:<resource>``."""
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"
