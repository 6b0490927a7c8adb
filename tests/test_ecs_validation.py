"""Validation where the image will run: a one-off ECS task of the new revision before the service moves.

Two layers:

- pure: the RunTask request against the AWS rules it relies on (each with its source in
  ``resources/validation.py`` and ``common.py``), the reading of a stopped task, and the plan;
- against a moto server over HTTP, the real ``EcsPlatform.serve``: moto's RunTask creates tasks but
  runs no container, and DescribeTasks moves them RUNNING -> ... -> STOPPED with every container's
  ``exitCode`` 0. What a real container would do is stood in for by the test, never by our code:
  its log lines are put into the task's own awslogs stream (CloudWatch Logs PutLogEvents, right after
  moto answers RunTask), a non-zero exit is set on moto's DescribeTasks answer for the stopped task,
  a task that cannot start is stopped through moto's StopTask with ECS's reason, and a task that never
  ends is moto's state manager holding tasks RUNNING.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import boto3
import botocore.session
import pytest

from meta_deployer import versions
from meta_deployer.errors import UnsupportedDagsterVersion, ValidationFailed
from meta_deployer.platforms.aws import plan as aws_plan
from meta_deployer.platforms.aws.apply import STOP_REASON_MAX
from meta_deployer.platforms.aws.bootstrap import bootstrap
from meta_deployer.platforms.aws.common import CONTAINER_NAME, TAG_KEY_MAX, task_outcome
from meta_deployer.platforms.aws.engine import Output, RunTaskToCompletion
from meta_deployer.platforms.aws.resources import validation
from meta_deployer.platforms.aws.resources.task_definition import LOG_STREAM_PREFIX
from meta_deployer.platforms.ecs import EcsPlatform
from meta_deployer_runtime.contract import validate_command
from test_ecs_support import CallCounter, checkout_for, make_network, published_for, settings_for, spec_for

LOG: list[str] = []
#: StartTask's ``startedBy`` rule (RunTask's is looser: 128): "Up to 36 letters (uppercase and
#: lowercase), numbers, hyphens (-), forward slash (/), and underscores (_)".
STARTED_BY = re.compile(r"^[A-Za-z0-9/_-]{1,36}\Z")


def log(line: str) -> None:
    LOG.append(line)


# -- pure: the request against the AWS rules --------------------------------------------------


def _plan(observed_service=None, *, new_revision=True):
    from test_aws_plan import EMPTY, desired, observed_after

    d = desired()
    if not new_revision:
        return d, aws_plan.plan(d, observed_after(d))
    obs = dict(EMPTY) if observed_service is None else {**observed_after(desired(commit="0" * 40, digest="sha256:" + "ab" * 32)), "service": observed_service}
    return d, aws_plan.plan(d, obs)


def _step(plan) -> RunTaskToCompletion:
    (step,) = [s for s in plan.steps if isinstance(s, RunTaskToCompletion)]
    return step


def test_the_request_follows_the_runtask_rules_and_uses_the_services_revision_and_network():
    d, plan = _plan()
    step = _step(plan)
    request = step.request
    create = next(s for s in plan.steps if s.label == "ecs.CreateService")
    # The very revision the service will run: the same placeholder of the same register call.
    assert request["taskDefinition"] == create.params["taskDefinition"]
    assert isinstance(request["taskDefinition"], Output) and request["taskDefinition"].call_id == "task_definition.register"
    # awsvpc needs networkConfiguration.awsvpcConfiguration: the service's own, no public IP, Fargate.
    assert request["networkConfiguration"] == create.params["networkConfiguration"]
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    assert request["launchType"] == "FARGATE" and request["count"] == 1
    # The override names a container of the definition and replaces only its command (and adds one variable).
    (override,) = request["overrides"]["containerOverrides"]
    assert override["name"] == CONTAINER_NAME == d.task_definition["containerDefinitions"][0]["name"]
    assert override["command"] == validate_command() == step.command
    assert set(override) == {"name", "command", "environment"}
    assert override["environment"] == [
        {"name": versions.WINDOW_ENV, "value": ",".join(versions.supported_minors())},
        {"name": "META_DEPLOYER_VALIDATING", "value": "1"},
    ]
    assert "taskRoleArn" not in request["overrides"] and "executionRoleArn" not in request["overrides"]  # the definition's
    assert STARTED_BY.match(request["startedBy"])
    assert all(len(t["key"]) <= TAG_KEY_MAX and not t["key"].lower().startswith("aws:") for t in request["tags"])
    # clientToken: botocore fills it for RunTask (an idempotency token), so the request sets none.
    model = botocore.session.get_session().get_service_model("ecs").operation_model("RunTask")
    assert model.input_shape.members["clientToken"].metadata.get("idempotencyToken") is True
    assert "clientToken" not in request
    # The log stream read back is the awslogs one: <prefix>/<container name>/<task id>.
    options = d.task_definition["containerDefinitions"][0]["logConfiguration"]["options"]
    assert step.log_group == options["awslogs-group"]
    assert step.log_stream_prefix == f"{options['awslogs-stream-prefix']}/{CONTAINER_NAME}" == f"{LOG_STREAM_PREFIX}/dagster"
    assert step.timeout_s == d.settings.validate_timeout_s
    assert "validate the definitions of repo sales" in plan.render()


def test_the_task_runs_before_the_service_is_created_or_updated():
    _, first = _plan()
    ops = first.operations
    assert ops.index("ecs.RegisterTaskDefinition") < ops.index("ecs.RunTaskToCompletion") < ops.index("ecs.CreateService")


def test_an_unchanged_deploy_plans_no_task():
    _, plan = _plan(new_revision=False)
    assert plan.steps == ()


def test_a_reused_revision_the_service_does_not_run_yet_is_validated():
    assert validation.needed("dagster-repo-sales:3", None)  # no service yet
    assert validation.needed("dagster-repo-sales:3", {"taskDefinition": "arn:aws:ecs:r:1:task-definition/dagster-repo-sales:2"})
    assert not validation.needed("dagster-repo-sales:3", {"taskDefinition": "arn:aws:ecs:r:1:task-definition/dagster-repo-sales:3"})
    assert validation.needed(Output("task_definition.register", "x"), {"taskDefinition": "dagster-repo-sales:3"})


def _stopped(exit_code=..., reason="Essential container in task exited", stop_code=None):
    container = {"name": CONTAINER_NAME}
    if exit_code is not ...:
        container["exitCode"] = exit_code
    task = {"lastStatus": "STOPPED", "stoppedReason": reason, "containers": [container]}
    if stop_code:
        task["stopCode"] = stop_code
    return task


def test_reading_a_stopped_task():
    assert task_outcome(_stopped(0), CONTAINER_NAME).succeeded
    failed = task_outcome(_stopped(1), CONTAINER_NAME)
    assert not failed.succeeded and failed.started and failed.exit_code == 1
    # A container that never ran has no exitCode; ECS says why in stopCode and stoppedReason.
    pull = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
    for task in (_stopped(reason=pull, stop_code="TaskFailedToStart"), _stopped(0, reason=pull), _stopped(reason="")):
        outcome = task_outcome(task, CONTAINER_NAME)
        assert not outcome.started and not outcome.succeeded and outcome.exit_code is None
    assert "CannotPullContainerError" in task_outcome(_stopped(reason=pull), CONTAINER_NAME).reason
    assert not task_outcome(_stopped(0) | {"containers": [{"name": "other", "exitCode": 0}]}, CONTAINER_NAME).succeeded


# -- against moto: the real serve ---------------------------------------------------------------


@pytest.fixture
def settings(moto, tmp_path):
    s = settings_for(tmp_path, make_network())
    bootstrap(s, log=log)
    return s


def deploy(platform, tmp_path, seed="v1", commit="c1"):
    spec = spec_for("sales")
    return platform.serve(spec, published_for(spec.name, seed), checkout_for(spec.name, tmp_path, commit), log)


def validation_tasks() -> list[dict]:
    ecs = boto3.client("ecs")
    arns = []
    for status in ("RUNNING", "STOPPED"):
        arns += ecs.list_tasks(cluster="dagster", startedBy=validation.STARTED_BY, desiredStatus=status)["taskArns"]
    return ecs.describe_tasks(cluster="dagster", tasks=arns, include=["TAGS"])["tasks"] if arns else []


def container_says(platform: EcsPlatform, lines: list[str], exit_code: int | None = None) -> None:
    """Stand in for the validation container: it writes ``lines`` to its awslogs stream and exits ``exit_code``.

    moto runs no container; this writes the lines with the test's own client (not counted as the
    deployer's calls) once moto has created the task, and sets the exit code on moto's answer for
    the stopped task, as ECS reports it.
    """
    logs = boto3.client("logs")

    def wrote(parsed, **_):
        for task in parsed.get("tasks") or []:
            stream = f"{LOG_STREAM_PREFIX}/{CONTAINER_NAME}/{task['taskArn'].rsplit('/', 1)[-1]}"
            logs.create_log_stream(logGroupName="/dagster/repos/sales", logStreamName=stream)
            now = int(time.time() * 1000)
            logs.put_log_events(
                logGroupName="/dagster/repos/sales", logStreamName=stream,
                logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
            )

    def exited(parsed, **_):
        for task in parsed.get("tasks") or []:
            if task.get("lastStatus") == "STOPPED" and exit_code is not None:
                for container in task.get("containers") or []:
                    container["exitCode"] = exit_code
                task.setdefault("stopCode", "EssentialContainerExited")

    platform.gateway.ecs.meta.events.register("after-call.ecs.RunTask", wrote)
    platform.gateway.ecs.meta.events.register("after-call.ecs.DescribeTasks", exited)


def service_revision() -> str:
    svc = boto3.client("ecs").describe_services(cluster="dagster", services=["sales"])["services"][0]
    return svc["taskDefinition"].rsplit("/", 1)[-1]


def active_revisions() -> list[str]:
    arns = boto3.client("ecs").list_task_definitions(familyPrefix="dagster-repo-sales", status="ACTIVE")["taskDefinitionArns"]
    return [a.rsplit(":", 1)[-1] for a in arns]


def test_a_passing_validation_then_updates_the_service(settings, tmp_path):
    platform = EcsPlatform(settings)
    deploy(platform, tmp_path)
    container_says(platform, ["definitions loaded: 3 assets"], exit_code=0)
    calls = CallCounter(platform.gateway)
    LOG.clear()
    deploy(platform, tmp_path, seed="v2", commit="c2")

    mutating = calls.mutating
    assert mutating.index("ecs.RegisterTaskDefinition") < mutating.index("ecs.RunTask") < mutating.index("ecs.UpdateService")
    assert "ecs.StopTask" not in mutating
    assert service_revision() == "dagster-repo-sales:2"
    assert active_revisions() == ["1", "2"]  # the task used the service's revision: no other was registered
    task = next(t for t in validation_tasks() if t["taskDefinitionArn"].endswith("dagster-repo-sales:2"))
    assert task["overrides"]["containerOverrides"][0]["command"] == validate_command()
    assert {"key": "meta-deployer:repo", "value": "sales"} in task["tags"]
    assert any("definitions loaded: 3 assets" in line for line in LOG)  # its log, read back from its stream


def test_a_failing_validation_leaves_the_service_untouched(settings, tmp_path):
    platform = EcsPlatform(settings)
    deploy(platform, tmp_path)
    container_says(platform, [
        "Traceback (most recent call last):",
        "ModuleNotFoundError: No module named 'pandas'",
    ], exit_code=1)
    calls = CallCounter(platform.gateway)
    with pytest.raises(ValidationFailed) as info:
        deploy(platform, tmp_path, seed="v2", commit="c2")
    message = str(info.value)
    assert "validate the definitions of repo sales failed: the command exited 1" in message
    assert "ModuleNotFoundError: No module named 'pandas'" in message
    assert "meta_deployer_runtime.validate" in message and "was not touched" in message
    assert not {"ecs.UpdateService", "ecs.CreateService", "ecs.TagResource"} & set(calls.mutating)
    assert service_revision() == "dagster-repo-sales:1"  # the old version still serves
    # The family's latest ACTIVE revision (what runs use) is the serving one again.
    assert active_revisions() == ["1"] and "Deregistered dagster-repo-sales:2" in message


def test_a_failing_first_deploy_creates_no_service(settings, tmp_path):
    platform = EcsPlatform(settings)
    container_says(platform, ["SyntaxError: invalid syntax"], exit_code=2)
    calls = CallCounter(platform.gateway)
    with pytest.raises(ValidationFailed, match="exited 2"):
        deploy(platform, tmp_path)
    assert "ecs.CreateService" not in calls.mutating
    assert [s for s in boto3.client("ecs").describe_services(cluster="dagster", services=["sales"])["services"]
            if s["status"] != "INACTIVE"] == []


def test_a_task_that_cannot_start_says_so(settings, tmp_path):
    platform = EcsPlatform(settings)
    deploy(platform, tmp_path)
    ecs = boto3.client("ecs")
    reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s): not found"

    def cannot_pull(parsed, **_):  # ECS stops a task whose image it cannot pull, with this reason
        for task in parsed.get("tasks") or []:
            ecs.stop_task(cluster="dagster", task=task["taskArn"], reason=reason)

    platform.gateway.ecs.meta.events.register("after-call.ecs.RunTask", cannot_pull)
    calls = CallCounter(platform.gateway)
    with pytest.raises(ValidationFailed) as info:
        deploy(platform, tmp_path, seed="v2", commit="c2")
    assert "validate the definitions of repo sales failed: the task could not start: CannotPullContainerError" in str(info.value)
    assert "ecs.UpdateService" not in calls.mutating
    assert service_revision() == "dagster-repo-sales:1"


@pytest.fixture
def tasks_never_stop(moto):
    """moto's state manager keeps every task RUNNING (a container that never exits)."""

    def post(path: str, body: dict) -> None:
        request = urllib.request.Request(f"{moto.url}/moto-api/state-manager/{path}", data=json.dumps(body).encode(), method="POST")
        urllib.request.urlopen(request).read()

    post("set-transition", {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1_000_000}})
    yield
    post("unset-transition", {"model_name": "ecs::task"})


def test_a_task_past_its_timeout_is_stopped_and_fails(moto, tasks_never_stop, tmp_path):
    settings = settings_for(tmp_path, make_network(), META_DEPLOYER_ECS_VALIDATE_TIMEOUT="0.2")
    bootstrap(settings, log=log)
    platform = EcsPlatform(settings)
    container_says(platform, ["loading definitions..."])
    calls = CallCounter(platform.gateway)
    with pytest.raises(ValidationFailed) as info:
        deploy(platform, tmp_path)
    message = str(info.value)
    assert "the task was still RUNNING after 0.2s (META_DEPLOYER_ECS_VALIDATE_TIMEOUT), so it was stopped" in message
    assert "loading definitions..." in message
    assert calls.mutating.count("ecs.StopTask") == 1 and "ecs.CreateService" not in calls.mutating
    (task,) = validation_tasks()
    assert task["desiredStatus"] == "STOPPED"
    assert task["stoppedReason"].startswith("meta_deployer: validate the definitions of repo sales: still RUNNING")
    assert len(task["stoppedReason"]) <= STOP_REASON_MAX


def test_an_unchanged_deploy_runs_no_task(settings, tmp_path):
    platform = EcsPlatform(settings)
    deploy(platform, tmp_path)
    assert len(validation_tasks()) == 1
    calls = CallCounter(platform.gateway)
    deploy(platform, tmp_path)
    assert calls.mutating == [] and "ecs.RunTask" not in calls.calls and "ecs.DescribeTasks" not in calls.calls
    assert len(validation_tasks()) == 1


# -- the validator's report, read back from the task's log ---------------------------------------


def test_the_validation_task_passes_the_window_and_its_report_names_the_release(settings, tmp_path, validator_reports):
    assert validation.VALIDATING_ENV[versions.WINDOW_ENV] == ",".join(versions.supported_minors())
    platform = EcsPlatform(settings)
    deploy(platform, tmp_path)
    lines, code = validator_reports["ok"]
    container_says(platform, ["fetching nothing: the code is in the image", *lines], exit_code=code)
    served = deploy(platform, tmp_path, seed="v2", commit="c2")
    assert served.metadata["dagster_version"] == versions.pin("dagster")
    assert service_revision() == "dagster-repo-sales:2"
    task = next(t for t in validation_tasks() if t["taskDefinitionArn"].endswith("dagster-repo-sales:2"))
    env = {e["name"]: e["value"] for e in task["overrides"]["containerOverrides"][0]["environment"]}
    assert env[versions.WINDOW_ENV] == ",".join(versions.supported_minors())


def test_an_image_outside_the_window_fails_the_task_with_the_version_error(settings, tmp_path, validator_reports):
    platform = EcsPlatform(settings)
    deploy(platform, tmp_path)
    lines, code = validator_reports["none"]
    assert code != 0
    container_says(platform, lines, exit_code=code)
    calls = CallCounter(platform.gateway)
    with pytest.raises(UnsupportedDagsterVersion) as raised:
        deploy(platform, tmp_path, seed="v2", commit="c2")
    message = str(raised.value)
    assert "sales" in message and "no dagster at all" in message and versions.window() in message
    assert "was not touched" in message  # the task's own report follows the version error
    assert not {"ecs.UpdateService", "ecs.CreateService"} & set(calls.mutating)
    assert service_revision() == "dagster-repo-sales:1"
