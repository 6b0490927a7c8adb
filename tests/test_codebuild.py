"""The codebuild builder: AWS rules on our requests (pure), the API calls against a moto server, and the
generated buildspec run for real against the local engine and registry.

moto 5.2.5 implements CodeBuild at API level only: it ignores StartBuild's overrides, and a build is
SUCCEEDED at the first BatchGetBuilds. So the StartBuild parameters are read from the request we sent
(botocore's ``provide-client-params`` event), what a build would do is done by the test at StartBuild
(the buildspec's commands run with bash; the log lines go to moto's CloudWatch Logs, where CodeBuild
writes them), and a failed build's report is checked on an AWS-shaped BatchGetBuilds answer.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
import yaml
from dockerkit import (
    DEFINITIONS,
    Collect,
    checkout,
    make_settings,
    missing,
    repo_names,  # noqa: F401 - fixture
    spec_for,
    unique_name,
)

from meta_deployer import versions
from meta_deployer.errors import ImageBuildError, SettingsError, UnsupportedDagsterVersion
from meta_deployer.platforms import codebuild, images
from meta_deployer.platforms.aws.bootstrap import bootstrap
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.aws.resources import codebuild as project_kind
from meta_deployer.platforms.base import Checkout
from meta_deployer.settings import ImageSettings, Settings

RUN_ID = "0f6f7a52-5c1c-4f1b-9d38-6a1e2b3c4d5e"  # the shape of a Dagster run id


def _job(git_remote, settings: ImageSettings, name: str = "sales", **fields: str) -> images.BuildJob:
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="hello", value=1), "README.md": "x"})
    spec = spec_for(name, remote.url, python_file="definitions.py", **fields)
    co = Checkout(name, remote.path, remote.head(), "main", remote.url, True)
    plan = images.plan_build(spec, co, settings)
    content_hash = plan.content_hash()
    repository = images.image_repository(name, "127.0.0.1:5000")
    tag = images.image_tag(co.commit, content_hash)
    return images.BuildJob(spec, co, plan, repository, tag, content_hash, "127.0.0.1:5000",
                           {"meta-deployer.repo": name}, RUN_ID)


# -- AWS rules on our requests (pure) ---------------------------------------------------------


def test_start_build_is_privileged_for_this_build_with_the_run_id_as_token_and_our_buildspec(git_remote):
    settings = ImageSettings(builder="codebuild", registry="127.0.0.1:5000")
    job = _job(git_remote, settings)
    spec_text = codebuild.render_buildspec(job, settings, ecr=False)
    env = codebuild.build_environment("b", codebuild.context_key("sales", job.tag), "127.0.0.1:5000")
    params = codebuild.start_build_params("meta-deployer-build", spec_text, env, RUN_ID, 1800)
    assert params["privilegedModeOverride"] is True  # Docker in the build needs it; the project is not privileged
    assert params["idempotencyToken"] == RUN_ID
    assert params["sourceTypeOverride"] == "NO_SOURCE"  # S3 sources must be ZIP files; ours is a tar.gz
    assert params["buildspecOverride"] == spec_text
    assert {"name": "MD_CONTEXT_URL", "value": f"s3://b/system/builds/sales/{job.tag}.tar.gz", "type": "PLAINTEXT"} in params[
        "environmentVariablesOverride"
    ]
    # Same token, another parameter: CodeBuild answers a parameter mismatch. The same job renders the same request.
    again = codebuild.start_build_params(
        "meta-deployer-build", codebuild.render_buildspec(job, settings, ecr=False), env, RUN_ID, 1800
    )
    assert again == params


def test_timeout_stays_within_start_builds_bounds():
    assert codebuild.timeout_minutes(1800) == 30
    assert codebuild.timeout_minutes(1) == 5  # BuildTimeOut min 5
    assert codebuild.timeout_minutes(10**6) == 2160  # BuildTimeOut max 2160
    assert codebuild.timeout_minutes(301) == 6  # whole minutes, rounded up


def test_the_buildspec_builds_the_plans_dockerfile_then_the_runtime_layer_validates_then_pushes(git_remote):
    settings = ImageSettings(builder="codebuild", registry="127.0.0.1:5000")
    job = _job(git_remote, settings)
    doc = yaml.safe_load(codebuild.render_buildspec(job, settings, ecr=False))
    assert doc["version"] == "0.2" and list(doc["phases"]) == ["install", "build"]  # no ECR login off ECR
    build = doc["phases"]["build"]["commands"]
    joined = "\n".join(build)
    first = joined.index(f"-f context/{job.plan.dockerfile}")
    runtime = joined.index("-f runtime/Dockerfile")
    validate = joined.index("--network none")
    push = joined.index(f"docker push {job.ref}")
    assert first < runtime < validate < push
    assert "-m meta_deployer_runtime.validate" in joined
    ecr_doc = yaml.safe_load(codebuild.render_buildspec(job, settings, ecr=True))
    assert "get-login-password" in ecr_doc["phases"]["pre_build"]["commands"][0]


def test_a_hostile_environment_value_stays_one_shell_word(git_remote):
    settings = ImageSettings(builder="codebuild", registry="127.0.0.1:5000")
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="hello", value=1)})
    from meta_deployer.spec import parse_spec

    spec = parse_spec({"name": "sales", "git_url": remote.url, "python_file": "definitions.py",
                       "environment": [{"name": "NOTE", "value": "x'; touch /tmp/pwned; echo '$(id)"}]}, "t")
    co = Checkout("sales", remote.path, remote.head(), "main", remote.url, True)
    plan = images.plan_build(spec, co, settings)
    job = images.BuildJob(spec, co, plan, "127.0.0.1:5000/dagster/sales", "t", "h", "127.0.0.1:5000", {}, RUN_ID)
    command = next(c for c in yaml.safe_load(codebuild.render_buildspec(job, settings, False))["phases"]["build"]["commands"]
                   if "--network none" in c)
    out = subprocess.run(["bash", "-c", "printf '%s\\n' " + command.split("&& docker run ", 1)[1]],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert "NOTE=x'; touch /tmp/pwned; echo '$(id)" in out  # one argument, nothing expanded


def test_the_service_role_reaches_only_documented_names():
    policy = project_kind.service_role_policy("bkt", "meta-deployer-build", "aws", "eu-west-1", "123456789012")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadBuildContexts"]["Resource"] == ["arn:aws:s3:::bkt/system/builds/*"]
    assert by_sid["ReadBuildContexts"]["Action"] == ["s3:GetObject"]
    assert by_sid["PushDagsterImages"]["Resource"] == ["arn:aws:ecr:eu-west-1:123456789012:repository/dagster/*"]
    assert set(by_sid["PushDagsterImages"]["Action"]) >= {
        "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
        "ecr:PutImage",
    }
    assert by_sid["EcrLogin"] == {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]}
    group = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/codebuild/meta-deployer-build"
    assert by_sid["WriteOwnLogGroup"]["Resource"] == [group, f"{group}:*"]
    every = [r for s in policy["Statement"] for r in s["Resource"]]
    assert every.count("*") == 1  # only GetAuthorizationToken, which has no resource type
    assert not any(a.endswith("*") and a != "*" for s in policy["Statement"] for a in s["Action"])
    assert len(project_kind.service_role_name("p" * 150)) <= 64  # IAM role names


def test_the_project_name_follows_createprojects_pattern():
    for good in ("meta-deployer-build", "a1", "Build_2"):
        assert ImageSettings.from_env({"META_DEPLOYER_CODEBUILD_PROJECT": good}).codebuild_project == good
    for bad in ("-x", "_x", "a", "has.dot", "x" * 151):
        with pytest.raises(SettingsError, match="META_DEPLOYER_CODEBUILD_PROJECT"):
            ImageSettings.from_env({"META_DEPLOYER_CODEBUILD_PROJECT": bad})


def test_a_failed_build_names_the_failing_phase_its_context_and_the_last_lines():
    build = {  # the shape of BatchGetBuilds' Build (API reference: Build, BuildPhase, PhaseContext)
        "id": "meta-deployer-build:8e1c", "buildStatus": "FAILED", "currentPhase": "COMPLETED",
        "phases": [
            {"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED"},
            {"phaseType": "INSTALL", "phaseStatus": "SUCCEEDED"},
            {"phaseType": "BUILD", "phaseStatus": "FAILED",
             "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": "Error while executing command: docker build. Reason: exit status 1"}]},
            {"phaseType": "POST_BUILD", "phaseStatus": "SUCCEEDED"},
            {"phaseType": "COMPLETED"},
        ],
    }
    message = codebuild.failure_message(build, "sales", [f"line {i}" for i in range(50)] + ["ERROR: no matching distribution"])
    assert "phase BUILD (FAILED)" in message and "COMMAND_EXECUTION_ERROR" in message and "docker build" in message
    assert "ERROR: no matching distribution" in message and "line 49" in message and "line 0\n" not in message
    assert "nothing was deployed" in message


def test_the_build_log_is_found_by_the_builds_answer_or_the_build_id():
    assert codebuild.log_location({"id": "p:abc", "logs": {"groupName": "g", "streamName": "s"}}, "p") == ("g", "s")
    assert codebuild.log_location({"id": "p:abc", "logs": {}}, "p") == ("/aws/codebuild/p", "abc")


def test_codebuild_needs_a_registry_off_ecs():
    with pytest.raises(SettingsError, match="META_DEPLOYER_REGISTRY"):
        codebuild.CodeBuildBuilder(ImageSettings(builder="codebuild", platform="docker"), gateway=object())


# -- against a moto server ----------------------------------------------------------------------


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({
        **os.environ, "META_DEPLOYER_ROOT": str(tmp_path), "META_DEPLOYER_PLATFORM": "ecs",
        "META_DEPLOYER_VPC_ID": "vpc-12345678", "META_DEPLOYER_BUILDER": "codebuild",
        "META_DEPLOYER_CODEBUILD_POLL_INTERVAL": "0", **env,
    })


def test_bootstrap_creates_the_project_and_a_second_bootstrap_changes_nothing(moto, tmp_path):
    settings = _settings(tmp_path)
    gw = AwsGateway()
    bootstrap(settings, log=lambda _: None, gateway=gw)
    made = {str(c) for c in gw.mutating_calls()}
    assert {"codebuild.CreateProject", "logs.CreateLogGroup", "iam.CreateRole", "iam.PutRolePolicy"} <= made
    project = gw.get_codebuild_project("meta-deployer-build")
    assert project["environment"]["privilegedMode"] is False  # privileged per build only
    assert project["environment"]["computeType"] == "BUILD_GENERAL1_SMALL"
    assert project["serviceRole"].endswith(":role/meta-deployer-build-service-role")
    assert project["logsConfig"]["cloudWatchLogs"]["groupName"] == "/aws/codebuild/meta-deployer-build"
    role = gw.get_role("meta-deployer-build-service-role")
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "codebuild.amazonaws.com"}
    assert gw.get_log_group("/aws/codebuild/meta-deployer-build")["retentionInDays"] == 30

    again = AwsGateway()
    result = bootstrap(settings, log=lambda _: None, gateway=again)
    assert result.steps == () and again.mutating_calls() == []

    # The docker builder needs no project: bootstrap plans none.
    docker = AwsGateway()
    bootstrap(_settings(tmp_path, META_DEPLOYER_BUILDER="docker", META_DEPLOYER_CODEBUILD_PROJECT="other"),
              log=lambda _: None, gateway=docker)
    assert docker.get_codebuild_project("other") is None


class FakeCodeBuildRun:
    """At StartBuild, what the build would leave behind: its log lines in CloudWatch Logs, and (``push``) the image."""

    def __init__(self, gw: AwsGateway, project: str, run=None):
        self.gw, self.project, self.run = gw, project, run
        self.params: dict = {}
        self.starts = 0
        gw.codebuild.meta.events.register("provide-client-params.codebuild.StartBuild", self._params)
        gw.codebuild.meta.events.register("after-call.codebuild.StartBuild", self._started)

    def _params(self, params, **_):
        self.params = dict(params)
        self.starts += 1

    def _started(self, parsed, **_):
        build_id = parsed["build"]["id"]
        lines = self.run(self.params) if self.run else ["[Container] Entering phase BUILD", "Step 1/9 : FROM python:3.12-slim"]
        logs = boto3.client("logs")
        group, stream = codebuild.log_location({"id": build_id, "logs": {}}, self.project)
        try:
            logs.create_log_group(logGroupName=group)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName=group, logStreamName=stream,
                            logEvents=[{"timestamp": now, "message": line} for line in lines if line] or [{"timestamp": now, "message": "(no output)"}])


def test_codebuild_builds_through_the_api_streams_its_log_then_finds_the_tag(moto, tmp_path, git_remote):
    settings = _settings(tmp_path)
    gw = AwsGateway()
    bootstrap(settings, log=lambda _: None, gateway=gw)
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="hello", value=1)})
    spec = spec_for("sales", remote.url, python_file="definitions.py")
    co = Checkout("sales", remote.path, remote.head(), "main", remote.url, True)
    ecr = boto3.client("ecr")

    def push(params):  # the build's `docker push`, as ECR would record it
        tag = params["buildspecOverride"].split("docker push ", 1)[1].split("\n", 1)[0].rsplit(":", 1)[1].strip("'")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                               "digest": "sha256:" + "1" * 64}, "layers": []}
        ecr.put_image(repositoryName="dagster/sales", imageTag=tag, imageManifest=json.dumps(manifest))
        return ["[Container] Entering phase BUILD", "Successfully tagged", "pushed"]

    fake = FakeCodeBuildRun(gw, "meta-deployer-build", push)
    builder = codebuild.CodeBuildBuilder(settings.images, gateway=gw)
    log = Collect()
    artifact = images.build_image(spec, co, settings.images, log, run_id=RUN_ID, builder=builder)

    assert artifact.built and artifact.metadata["in_registry"] and artifact.metadata["digest"].startswith("sha256:")
    assert artifact.ref.startswith(f"{builder.registry()}/dagster/sales:{co.commit[:12]}-")
    assert fake.params["privilegedModeOverride"] is True and fake.params["idempotencyToken"] == RUN_ID
    assert fake.params["projectName"] == "meta-deployer-build"
    key = codebuild.context_key("sales", artifact.ref.rsplit(":", 1)[1])
    assert artifact.metadata["context"] == f"s3://{settings.images.bucket}/{key}"
    body = boto3.client("s3").get_object(Bucket=settings.images.bucket, Key=key)["Body"].read()
    names = tarfile.open(fileobj=io.BytesIO(body), mode="r:gz").getnames()
    assert "context/definitions.py" in names and "context/.meta_deployer/Dockerfile" in names
    assert "runtime/Dockerfile" in names and any(n.startswith("runtime/meta_deployer_runtime/") for n in names)
    assert log.lines.index("Successfully tagged") < log.lines.index("pushed")  # streamed, in order
    assert {"codebuild.StartBuild", "codebuild.BatchGetBuilds", "logs.GetLogEvents"} <= {str(c) for c in gw.calls}

    # The registry has the tag now: no upload, no build.
    before = len(gw.calls)
    again = images.build_image(spec, co, settings.images, Collect(), run_id="another-run", builder=builder)
    assert not again.built and again.metadata["digest"] == artifact.metadata["digest"]
    assert [str(c) for c in gw.mutating_calls(before)] == [] and fake.starts == 1


def test_a_build_the_registry_never_got_is_an_error(moto, tmp_path, git_remote):
    settings = _settings(tmp_path)
    gw = AwsGateway()
    bootstrap(settings, log=lambda _: None, gateway=gw)
    FakeCodeBuildRun(gw, "meta-deployer-build")  # a build that pushed nothing
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="hello", value=1)})
    spec = spec_for("sales", remote.url, python_file="definitions.py")
    co = Checkout("sales", remote.path, remote.head(), "main", remote.url, True)
    with pytest.raises(ImageBuildError, match="succeeded but the registry has no"):
        images.build_image(spec, co, settings.images, Collect(), run_id=RUN_ID,
                           builder=codebuild.CodeBuildBuilder(settings.images, gateway=gw))


def _failed_builds(gw: AwsGateway) -> None:
    """moto says SUCCEEDED at once: answer as AWS does for a build whose BUILD phase failed."""
    def failed(parsed, **_):
        for build in parsed.get("builds") or []:
            build["buildStatus"] = "FAILED"
            build["phases"] = [{"phaseType": "BUILD", "phaseStatus": "FAILED", "contexts": [
                {"statusCode": "COMMAND_EXECUTION_ERROR", "message": "Error while executing command: docker run ... Reason: exit status 4"}]}]
    gw.codebuild.meta.events.register("after-call.codebuild.BatchGetBuilds", failed)


def test_the_images_release_is_read_back_from_the_validators_report_in_the_build_log(moto, tmp_path, git_remote, validator_reports):
    lines, code = validator_reports["ok"]
    assert code == 0 and sum(codebuild.is_validator_line(line) for line in lines) == 2
    settings = _settings(tmp_path)
    gw = AwsGateway()
    bootstrap(settings, log=lambda _: None, gateway=gw)
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="hello", value=1)})
    spec = spec_for("sales", remote.url, python_file="definitions.py")
    co = Checkout("sales", remote.path, remote.head(), "main", remote.url, True)
    ecr = boto3.client("ecr")

    def push(params):
        tag = params["buildspecOverride"].split("docker push ", 1)[1].split("\n", 1)[0].rsplit(":", 1)[1].strip("'")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                               "digest": "sha256:" + "2" * 64}, "layers": []}
        ecr.put_image(repositoryName="dagster/sales", imageTag=tag, imageManifest=json.dumps(manifest))
        return ["[Container] Entering phase BUILD", "meta_deployer: validating the definitions (no network)", *lines, "pushed"]

    FakeCodeBuildRun(gw, "meta-deployer-build", push)
    artifact = images.build_image(spec, co, settings.images, Collect(), run_id=RUN_ID,
                                  builder=codebuild.CodeBuildBuilder(settings.images, gateway=gw))
    assert artifact.built and artifact.metadata["dagster_version"] == versions.pin("dagster")


def test_an_image_outside_the_window_fails_the_build_with_the_version_error(moto, tmp_path, git_remote, validator_reports):
    lines, code = validator_reports["none"]
    assert code != 0 and any(line.startswith("META_DEPLOYER_DAGSTER_VERSION=none") for line in lines)
    settings = _settings(tmp_path)
    gw = AwsGateway()
    bootstrap(settings, log=lambda _: None, gateway=gw)
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="hello", value=1),
                               "Dockerfile": "FROM python:3.12-slim\nCOPY . /app\nWORKDIR /app\n"})
    spec = spec_for("sales", remote.url, python_file="definitions.py")
    co = Checkout("sales", remote.path, remote.head(), "main", remote.url, True)
    FakeCodeBuildRun(gw, "meta-deployer-build", lambda params: ["[Container] Entering phase BUILD", *lines,
                                                                 "[Container] Command did not exit successfully"])
    _failed_builds(gw)
    with pytest.raises(UnsupportedDagsterVersion) as raised:
        images.build_image(spec, co, settings.images, Collect(), run_id=RUN_ID,
                           builder=codebuild.CodeBuildBuilder(settings.images, gateway=gw))
    message = str(raised.value)
    assert "sales" in message and "no dagster at all" in message and versions.window() in message
    assert "Dockerfile" in message  # the fix names where to install a supported release
    assert boto3.client("ecr").describe_images(repositoryName="dagster/sales")["imageDetails"] == []


# -- the buildspec, run for real against the local engine and registry -----------------------------


def _run_buildspec(params: dict, workdir: Path, env: dict[str, str]) -> list[str]:
    """Run the buildspec's phases' commands in order with bash, as CodeBuild would; every command must pass."""
    doc = yaml.safe_load(params["buildspecOverride"])
    assert doc["version"] == "0.2" and doc["env"]["shell"] == "bash"
    variables = {v["name"]: v["value"] for v in params["environmentVariablesOverride"]}
    full = {**env, **variables, "CODEBUILD_SRC_DIR": str(workdir), "CODEBUILD_BUILD_ID": "local"}
    lines: list[str] = []
    for phase in ("install", "pre_build", "build", "post_build"):
        for command in (doc["phases"].get(phase) or {}).get("commands", []):
            done = subprocess.run(["bash", "-c", command], cwd=workdir, env=full, capture_output=True, text=True)
            lines += done.stdout.splitlines() + done.stderr.splitlines()
            assert done.returncode == 0, f"{phase}: {command}\n" + "\n".join(lines[-30:])
    return lines


@pytest.mark.docker
def test_the_buildspec_runs_for_real_and_the_pushed_image_serves(moto, tmp_path, git_remote, repo_names, monkeypatch):
    # The AWS CLI comes with the dev extras (pyproject.toml), beside this Python.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not shutil.which("aws"):
        missing("the AWS CLI (which CodeBuild's images have, and the buildspec uses) is not installed")
    name = unique_name()
    repo_names.append(name)
    docker_settings = make_settings(tmp_path)  # the engine and the test registry, or skip/fail
    registry = docker_settings.images.registry
    settings = _settings(tmp_path, META_DEPLOYER_PLATFORM="docker", META_DEPLOYER_REGISTRY=registry,
                         DOCKER_HOST=os.environ.get("DOCKER_HOST", ""))
    gw = AwsGateway()
    bootstrap(settings, log=lambda _: None, gateway=gw)
    boto3.client("s3").create_bucket(Bucket=settings.images.bucket) if not gw.bucket_exists(settings.images.bucket) else None
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="hello", value=1)})
    spec = spec_for(name, remote.url, python_file="definitions.py")
    co = checkout(docker_settings, spec)
    src = tmp_path / "codebuild-src"
    src.mkdir()
    env = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "DOCKER_"))}
    env.update(PATH=os.environ["PATH"], HOME=str(tmp_path), AWS_ENDPOINT_URL=moto.url)
    FakeCodeBuildRun(gw, settings.images.codebuild_project, lambda params: _run_buildspec(params, src, env))

    log = Collect()
    artifact = images.build_image(spec, co, settings.images, log, run_id=uuid.uuid4().hex,
                                  builder=codebuild.CodeBuildBuilder(settings.images, gateway=gw))
    assert artifact.built and artifact.ref.startswith(f"{registry}/dagster/{name}:")
    assert any(line.startswith("Step ") for line in log.lines)  # the build's output reached the run log
    # The validator ran in the build (with the window) and its report, read back from the log, names the release.
    assert artifact.metadata["dagster_version"] == versions.pin("dagster")

    # It is in the registry: drop it from the engine, pull it back, and serve it.
    client = images.docker_client(docker_settings.env)
    assert images.registry_digest(client, artifact.ref, None) == artifact.metadata["digest"]
    client.api.remove_image(artifact.ref, noprune=True)
    images.pull_image(client, artifact.ref, None, Collect())
    from conftest import free_port
    from dagster._grpc.client import DagsterGrpcClient

    from meta_deployer.platforms import location

    port = free_port()
    env_in = {**images.validate_env(spec, settings.images), "META_DEPLOYER_VALIDATING": ""}
    workdir = location.container_workdir(client.api.inspect_image(artifact.ref)["Config"].get("WorkingDir"), spec)
    container = client.containers.run(
        artifact.ref, location.entrypoint_command("127.0.0.1", port), environment=env_in, working_dir=workdir,
        network_mode="host", tmpfs={images.VALIDATE_DAGSTER_HOME: "mode=1777"}, detach=True,
        labels={"meta-deployer.repo": name},
    )
    try:
        grpc = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.monotonic() + 120
        while True:
            try:
                repositories = grpc.list_repositories()
                break
            except Exception:
                container.reload()
                assert container.status == "running", container.logs().decode(errors="replace")[-2000:]
                assert time.monotonic() < deadline, "the code server never answered"
                time.sleep(1)
        assert "SerializableErrorInfo" not in repositories and "__repository__" in repositories
    finally:
        container.remove(force=True)
