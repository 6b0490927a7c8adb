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

from dataclasses import dataclass

from meta_deployer.platforms.aws.common import tags
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
#: The platform image's repository (the other half of ``make platform`` builds and pushes it).
IMAGE_REPOSITORY = "dagster/platform"


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

    @property
    def image(self) -> str:
        """``META_DEPLOYER_PLATFORM_IMAGE``, else ``dagster/platform:latest`` in the registry (the account's ECR)."""
        if self.platform.image:
            return self.platform.image
        suffix = ".com.cn" if self.partition == "aws-cn" else ".com"
        registry = self.settings.registry or f"{self.account}.dkr.ecr.{self.region}.amazonaws{suffix}"
        return f"{registry}/{IMAGE_REPOSITORY}:latest"

    def role_arn(self, name: str) -> str:
        """The ARN of IAM role ``name`` in this account."""
        return f"arn:{self.partition}:iam::{self.account}:role/{name}"

    def arn(self, service: str, resource: str) -> str:
        """``arn:<partition>:<service>:<region>:<account>:<resource>``."""
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"
