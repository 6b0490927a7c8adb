"""End to end on the docker platform: the Make targets, real containers, a real `dagster dev`, GraphQL.

1. templated repo: make add-repo; the container runs, the location is LOADED, and an asset
   materialization launched over GraphQL succeeds inside that container;
2. code change: make update-repo deploys the new commit and the old container is gone;
3. broken commit: refused before it is deployed; the previous version keeps serving;
4. a repo with its own Dockerfile and a src-layout package loaded through package_name;
5. list-repos / repo-logs / remove-repo.
"""

from __future__ import annotations

import pytest
from dockerkit import (
    BROKEN,
    OWN_DOCKERFILE,
    TEST_PORT_BASE,
    TEST_PORT_PAIRS,
    engine_env,
    repo_names,  # noqa: F401 - fixture
    unique_name,
)

from dagster_ui import materialize_when_daemon_ready, wait_for_location
from devkit import dagster_dev, run_make
from meta_deployer import naming
from meta_deployer.platforms import images

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

#: An asset that succeeds only inside the repo's container (its code is mounted there from the commit's archive),
#: where the storage root shows only the repo's own folder and shared/, and another repo's file is absent.
IN_CONTAINER = """\
import os

import dagster as dg


@dg.asset
def first() -> str:
    if not os.environ.get("META_DEPLOYER_CODE_SHA256"):
        raise RuntimeError("this run did not execute inside the repo's container")
    me, repos = os.environ["META_DEPLOYER_REPO"], os.path.join(os.environ["META_DEPLOYER_STORAGE_DIR"], "repos")
    if sorted(os.listdir(repos)) != sorted([me, "shared"]):
        raise RuntimeError(f"this run sees other repos' storage: {sorted(os.listdir(repos))}")
    try:
        open(os.path.join(repos, "victim", "assets", "secret")).read()
    except FileNotFoundError:
        print("isolation checked: victim's file is not in this container")
    else:
        raise RuntimeError("this run read another repo's file")
    return me


defs = dg.Definitions(assets=[first])
"""


@pytest.fixture
def docker_project(project, monkeypatch):
    """The project fixture on the docker platform, reaching the test engine and registry."""
    env = {
        **engine_env(),
        "META_DEPLOYER_PLATFORM": "docker",
        "META_DEPLOYER_DOCKER_PORT_BASE": TEST_PORT_BASE,
        "META_DEPLOYER_DOCKER_PORT_PAIRS": TEST_PORT_PAIRS,
        "META_DEPLOYER_DOCKER_POLL_INTERVAL": "0.2",
        "META_DEPLOYER_DOCKER_DRAIN_TIMEOUT": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    project.docker_env = env
    return project


def make(project, *args: str, check: bool = True, **env: str):
    return run_make(project, *args, env={**project.docker_env, **env}, check=check)


@pytest.fixture
def webserver(docker_project, monkeypatch):
    """`dagster dev` (webserver + daemon) on the project's generated workspace."""
    with dagster_dev(docker_project, docker_project.docker_env) as url:
        monkeypatch.setenv("DAGSTER_WEBSERVER_URL", url)
        yield url


def _containers(name: str) -> list:
    client = images.docker_client()
    return client.containers.list(all=True, filters={"label": f"meta-deployer.repo={name}"})


def test_templated_repo_update_broken_and_remove(docker_project, git_remote, webserver, repo_names):
    project = docker_project
    name = unique_name("e")
    repo_names.append(name)
    remote = git_remote(files={"definitions.py": IN_CONTAINER})
    env = {"DAGSTER_WEBSERVER_URL": webserver}

    victim = project.work / "storage" / "repos" / "victim" / "assets" / "secret"
    victim.parent.mkdir(parents=True)
    victim.write_text("another team's data")

    make(project, "add-repo", f"REPO_URL={remote.url}", f"REPO_NAME={name}", **env)
    [container] = _containers(name)
    assert container.name == naming.container_name(name) and container.status == "running"
    wait_for_location(webserver, name, assets=["first"])
    # The run executes inside the container, against the instance's mounted sqlite folders only.
    assert materialize_when_daemon_ready(webserver, name, ["first"]) == "SUCCESS"
    # Served through the location entry point: the output went under the repo's own prefix.
    assert (project.work / "storage" / "repos" / name / "assets" / "first").is_file()
    # Its compute logs too (covered by the repo's own mount); the other repo's file is untouched.
    logs = list((project.work / "storage" / "repos" / name / "logs").rglob("*.out"))
    assert any("isolation checked" in p.read_text() for p in logs)
    assert victim.read_text() == "another team's data"

    # A new commit: a new container serves it, the old one is gone.
    remote.commit({"definitions.py": (
        "import dagster as dg\n\n\n@dg.asset\ndef first() -> int:\n    return 1\n\n\n"
        "@dg.asset\ndef second() -> int:\n    return 2\n\n\ndefs = dg.Definitions(assets=[first, second])\n"
    )})
    make(project, "update-repo", f"REPO_NAME={name}", **env)
    wait_for_location(webserver, name, assets=["first", "second"])
    [updated] = _containers(name)
    assert updated.id != container.id and updated.name == naming.container_name(name)

    # A no-op update changes nothing.
    make(project, "update-repo", f"REPO_NAME={name}", **env)
    [same] = _containers(name)
    assert same.id == updated.id

    # A broken commit is refused before it is deployed; the previous version keeps serving.
    workspace_before = project.workspace.read_bytes()
    remote.commit({"definitions.py": BROKEN})
    failed = make(project, "update-repo", f"REPO_NAME={name}", check=False, **env)
    assert failed.returncode != 0
    assert "ValidationFailed" in failed.stdout + failed.stderr
    assert project.workspace.read_bytes() == workspace_before
    [still] = _containers(name)
    assert still.id == updated.id and still.status == "running"
    wait_for_location(webserver, name, assets=["first", "second"])

    listed = make(project, "list-repos", **env).stdout
    assert name in listed and "running" in listed
    logs = make(project, "repo-logs", f"REPO_NAME={name}", **env).stdout
    assert "code server" in logs.lower()

    make(project, "remove-repo", f"REPO_NAME={name}", **env)
    wait_for_location(webserver, name, present=False)
    assert _containers(name) == []


def test_own_dockerfile_src_layout_package(docker_project, git_remote, webserver, repo_names):
    project = docker_project
    name = unique_name("e")
    repo_names.append(name)
    remote = git_remote(files=OWN_DOCKERFILE)
    config = project.repos / name / "config.yml"
    config.parent.mkdir(parents=True)
    config.write_text(f"name: {name}\ngit_url: {remote.url}\nbranch: main\npackage_name: src_layout_project.definitions\n")
    make(project, "update-repo", f"REPO_NAME={name}", DAGSTER_WEBSERVER_URL=webserver)
    wait_for_location(webserver, name, assets=["packaged"])
    [container] = _containers(name)
    assert container.status == "running"
