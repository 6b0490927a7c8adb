"""Runs launched by dagster-aws's ``EcsRunLauncher`` for a deployed location use the repo's role and logs.

The code server reports ``DAGSTER_CONTAINER_CONTEXT`` (from its task
definition's environment) as its repository origin's container context; the
launcher merges it into every run it launches for that location. Here the
context is read back from the task definition the ecs platform registered in
moto, put on a run's origin exactly where the code server would put it, and
the real ``EcsRunLauncher`` launches the run against the same moto server.
"""

from __future__ import annotations

import json

import boto3
from dagster._core.code_pointer import FileCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.test_utils import create_run_for_test, instance_for_test

from meta_deployer import naming
from meta_deployer.platforms.aws.bootstrap import bootstrap
from meta_deployer.platforms.ecs import EcsPlatform
from test_ecs_support import checkout_for, make_network, published_for, settings_for, spec_for


def test_ecs_run_launcher_run_gets_the_repo_role_and_log_group(moto, tmp_path):
    env = make_network()
    settings = settings_for(tmp_path, env)
    bootstrap(settings, log=lambda _: None)
    platform = EcsPlatform(settings)
    spec = spec_for("sales", environment=[{"name": "FOO", "value": "bar"}])
    platform.serve(spec, published_for("sales"), checkout_for("sales", tmp_path), lambda _: None)

    ecs = boto3.client("ecs")
    server_td = ecs.describe_task_definition(taskDefinition="dagster-repo-sales")["taskDefinition"]
    server_env = {e["name"]: e["value"] for e in server_td["containerDefinitions"][0]["environment"]}
    container_context = json.loads(server_env["DAGSTER_CONTAINER_CONTEXT"])

    origin = JobPythonOrigin(
        job_name="my_job",
        repository_origin=RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python",
            code_pointer=FileCodePointer(python_file="definitions.py", fn_name="defs"),
            container_image=server_env["DAGSTER_CURRENT_IMAGE"],
            container_context=container_context,
        ),
    )
    launcher_config = {
        "use_current_ecs_task_config": False,
        "run_task_kwargs": {
            "cluster": "dagster",
            "launchType": "FARGATE",
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": env["META_DEPLOYER_SUBNETS"].split(","),
                    "securityGroups": [env["META_DEPLOYER_SECURITY_GROUPS"]],
                    "assignPublicIp": "DISABLED",
                }
            },
        },
    }
    with instance_for_test(
        overrides={"run_launcher": {"module": "dagster_aws.ecs", "class": "EcsRunLauncher", "config": launcher_config}}
    ) as instance:
        run = create_run_for_test(instance, job_name="my_job", job_code_origin=origin)
        instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))

    # The deploy's own validation task (started by meta-deployer/validate) is the other task in the cluster.
    tasks = ecs.describe_tasks(cluster="dagster", tasks=ecs.list_tasks(cluster="dagster")["taskArns"], include=["TAGS"])["tasks"]
    (task,) = [t for t in tasks if t.get("startedBy") != "meta-deployer/validate"]
    run_td = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    # The run's task uses the repo's own family: its task role and its log group.
    assert run_td["family"] == naming.task_family("sales")
    assert run_td["taskRoleArn"] == "arn:aws:iam::123456789012:role/dagster-repo-sales"
    assert run_td["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-group"] == "/dagster/repos/sales"
    # ... running the run worker instead of the code server, in the repo's container.
    (override,) = task["overrides"]["containerOverrides"]
    assert override["name"] == "dagster"
    assert override["command"][1:5] == ["-m", "dagster", "api", "execute_run"]
    tags = {t["key"]: t["value"] for t in task.get("tags", [])}
    assert tags[naming.REPO_TAG_KEY] == "sales"
    assert tags["dagster/run_id"] == run.run_id
