"""Validation where the image will run: a one-off ECS task loads the definitions before the service moves.

Sits between the task definition and the service in ``REPO_KINDS``. When the
service is about to run a revision it does not run yet (a new revision, or no
service at all), the plan gets a
:class:`~meta_deployer.platforms.aws.engine.RunTaskToCompletion` step first: a
task of **that very revision** (the ``task_definition`` value the previous kind
published, an Output when this plan registers it, so no second definition is
ever made) with the same task role, execution role, secrets, environment, log
group and cpu/memory, on the service's network (awsvpc on Fargate, the same
subnets and security groups, no public IP), whose container runs the contract's
validation command instead of the code server. A non-zero exit, a task that
cannot start, or one that outlives ``META_DEPLOYER_ECS_VALIDATE_TIMEOUT`` fails
the apply before UpdateService/CreateService; the executor then retires the
new revision as for any failed rollout. An unchanged deploy plans no task.

AWS rules the request relies on (tested in ``tests/test_ecs_validation.py``):

- RunTask (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html): a task
  definition in ``awsvpc`` mode needs ``networkConfiguration.awsvpcConfiguration`` (subnets,
  security groups); ``overrides.containerOverrides[].name`` names a container of the definition
  and ``command`` replaces its command; environment overrides add to the definition's;
  ``startedBy`` is at most 36 letters, digits, ``-``, ``/`` and ``_`` (StartTask's wording; RunTask
  allows 128); botocore fills ``clientToken`` (the idempotency token, at most 64 characters:
  https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html) by itself.
- A task run outside a service keeps running whatever its container health check says
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_HealthCheck.html): the code
  server's gRPC health check, which fails while validating, does not stop the task.
- The awslogs stream of a container is ``<awslogs-stream-prefix>/<container name>/<task id>``
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using_awslogs.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meta_deployer import naming, versions
from meta_deployer.platforms.aws.common import CONTAINER_NAME, PlanError, RepoInputs, revision_of, tag_list
from meta_deployer.platforms.aws.engine import Context, Kind, Output, RunTaskToCompletion
from meta_deployer.platforms.aws.resources.service import BOOTSTRAP_HINT
from meta_deployer.platforms.aws.resources.task_definition import LOG_STREAM_PREFIX

#: ``startedBy`` of every validation task (ListTasks can filter on it).
STARTED_BY = "meta-deployer/validate"
#: Added to the task's environment (an override: the definition's own stays as it is), as the docker
#: and dev platforms set it while validating.
VALIDATING_ENV = {"META_DEPLOYER_VALIDATING": "1", **versions.window_env()}
#: Tag key saying what a one-off task is for.
PURPOSE_TAG = "meta-deployer:purpose"


@dataclass(frozen=True)
class Validation:
    """What the validation task needs besides the revision (which the task definition kind publishes)."""

    repo: str
    cluster: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    command: tuple[str, ...]
    log_group: str
    tags: dict[str, str]
    timeout_s: float


def want(inputs: RepoInputs) -> Validation:
    s = inputs.settings
    return Validation(
        repo=inputs.name, cluster=s.cluster, subnets=s.subnets, security_groups=s.security_groups,
        command=tuple(inputs.server.validate_command), log_group=naming.log_group(inputs.name),
        tags={naming.REPO_TAG_KEY: inputs.name, PURPOSE_TAG: "validate"}, timeout_s=s.validate_timeout_s,
    )


def run_task_request(want: Validation, task_definition: Any) -> dict[str, Any]:
    """The RunTask parameters: the service's revision and network, the validation command."""
    return {
        "cluster": want.cluster,
        "taskDefinition": task_definition,
        "count": 1,
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(want.subnets), "securityGroups": list(want.security_groups), "assignPublicIp": "DISABLED",
            }
        },
        "overrides": {
            "containerOverrides": [{
                "name": CONTAINER_NAME,
                "command": list(want.command),
                "environment": [{"name": k, "value": v} for k, v in sorted(VALIDATING_ENV.items())],
            }]
        },
        "startedBy": STARTED_BY,
        "tags": tag_list(want.tags, "key", "value"),
    }


def needed(task_definition: Any, service: dict[str, Any] | None) -> bool:
    """True when the service is about to run a revision it does not run now (new, or no service)."""
    if isinstance(task_definition, Output) or not service:
        return True
    return revision_of(service.get("taskDefinition") or "-") != revision_of(str(task_definition))


def converge(want: Validation, _have: Any, ctx: Context) -> list[RunTaskToCompletion]:
    td = ctx.values.get("task_definition")
    if not needed(td, ctx.observed.get("service")):
        return []
    if not want.command:
        raise PlanError(f"the code server of {want.repo} has no validation command (CodeServer.validate_command)")
    purpose = f"validate the definitions of repo {want.repo}"
    # The release the validator reports (read back from the task's log): the deployment record's.
    ctx.values["dagster_version"] = Output(f"task:{purpose}", "dagster_version")
    return [RunTaskToCompletion(
        purpose=purpose,
        cluster=want.cluster,
        request=run_task_request(want, td),
        container=CONTAINER_NAME,
        log_group=want.log_group,
        log_stream_prefix=f"{LOG_STREAM_PREFIX}/{CONTAINER_NAME}",
        timeout_s=want.timeout_s,
        hints=(("ClusterNotFoundException", BOOTSTRAP_HINT),),
        validates=want.repo,
    )]


KIND = Kind("validation", want, converge=converge)
