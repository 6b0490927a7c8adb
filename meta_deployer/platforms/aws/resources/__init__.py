"""The resource kinds of a repo on the ``ecs`` platform, one module each (pure: no boto3).

``REPO_KINDS`` is the deploy order: a kind may use what an earlier one
published (an ARN, whether the service changed). Removal runs them by their
``removal_rank``. Adding a kind is one module and one entry here.
"""

from __future__ import annotations

from meta_deployer.platforms.aws.resources import (
    discovery,
    execution_role,
    load_balancer,
    log_group,
    purge,
    record,
    revisions,
    service,
    task_definition,
    task_role,
    validation,
)

REPO_KINDS = (
    log_group.KIND,  # first: tasks fail to start when their awslogs group is missing
    task_role.KIND,
    execution_role.KIND,  # the task definition names it: its image, log group and secrets only
    discovery.KIND,
    load_balancer.KIND,
    task_definition.KIND,
    validation.KIND,  # a one-off task of the revision the service will run, before the service moves
    service.KIND,  # and the wait for a stable rollout
    record.KIND,  # only once stable
    revisions.KIND,  # retire old revisions after the rollout
    purge.ECR_KIND,
    purge.DATA_KIND,
)
