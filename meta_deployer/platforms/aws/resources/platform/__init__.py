"""``make platform``: the platform's own AWS resources, as kinds of the generic engine (pure).

``PLATFORM_KINDS`` is the order: security groups, the workspace EFS (file system, access point,
mount targets), the roles, the log groups, the deployer's Cloud Map name, the webserver's target
group and authenticated rule, the task definitions, and the three services. Removal
(``make platform-down``) runs them by ``removal_rank`` and removes the services, the rule and target
group, the Cloud Map name and the task definitions; only a PURGE removes the EFS, the log groups
and the roles. The modules say which AWS rules they rely on.
"""

from __future__ import annotations

from meta_deployer.platforms.aws.resources.platform import efs, network, roles, services, web
from meta_deployer.platforms.aws.resources.platform.common import PlatformInputs  # noqa: F401

PLATFORM_KINDS = (
    *network.KINDS,
    efs.KIND,
    *roles.KINDS,
    services.LOG_GROUPS,
    services.DISCOVERY,
    web.KIND,
    services.TASK_DEFINITIONS,
    services.SERVICES,
)
