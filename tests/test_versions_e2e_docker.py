"""End to end on the docker platform: templated repositories pinning different supported Dagster releases.

Three real git repositories without a Dockerfile pin three different supported releases (the newest
three minors of the window, one of them the deployer's own) in their requirements.txt. ``make add-repo``
deploys each: the deployer resolves the release the repo asks for, builds (or finds) the base image of
that release (``<registry>/dagster/base:<release>-<hash>``, pushed), and builds the repo's dependency
image FROM it. One real ``dagster dev`` (the deployer's own webserver and daemon) serves the three
containers side by side with their assets; a run of each, launched over GraphQL, executes inside that
repo's container, checks there that it runs the pinned release, and materializes through the
prefix-enforcing IO manager under ``repos/<name>/``. ``list-repos`` shows each location's release.

A repository pinning a release outside the window (``dagster==1.5.13``) fails before anything is built:
the error names the release, the window and the fix; no base or repo image is built or pushed, and the
workspace stays byte-identical.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from dockerkit import TEST_PORT_BASE, TEST_PORT_PAIRS, engine_env, repo_names, unique_name  # noqa: F401 - fixture

from dagster_ui import materialize_when_daemon_ready, wait_for_location
from devkit import dagster_dev, run_make
from meta_deployer.platforms import images
from meta_deployer import versions
from meta_deployer.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

#: The releases pinned: the newest three minors of the window (the deployer's own among them).
RELEASES = list(versions.tested_releases().values())[-3:]

ASSET = """\
import dagster as dg


@dg.asset
def {asset}() -> str:
    # Runs inside the repo's container: it must be the release the repository pinned.
    if dg.__version__ != "{release}":
        raise RuntimeError(f"this run has dagster {{dg.__version__}}, not {release}")
    return dg.__version__


defs = dg.Definitions(assets=[{asset}])
"""


def _registry_tags(registry: str, repository: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=10) as response:
            return sorted(json.loads(response.read()).get("tags") or [])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


def _local_tags(client, repository_suffix: str) -> list[str]:
    """The engine's tags of repositories ending with ``repository_suffix`` (one listing call)."""
    return sorted(t for image in client.api.images() for t in image.get("RepoTags") or []
                  if t.rsplit(":", 1)[0].endswith(repository_suffix))


@pytest.fixture
def docker_project(project, monkeypatch):
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
    return run_make(project, *args, env={**project.docker_env, **env}, check=check, timeout=600)


def test_three_releases_side_by_side_on_their_own_bases_and_one_refused(docker_project, git_remote, repo_names):
    started = time.monotonic()
    project = docker_project
    registry = project.docker_env["META_DEPLOYER_REGISTRY"]
    client = images.docker_client()
    pinned = {unique_name(f"v{release.split('.')[1]}-"): release for release in RELEASES}
    repo_names.extend(pinned)
    remotes = {
        name: git_remote(name=name, files={
            "definitions.py": ASSET.format(asset=f"asset_{name.replace('-', '_')}", release=release),
            "requirements.txt": f"dagster=={release}\n",
        })
        for name, release in pinned.items()
    }
    # The base images of the three releases, built side by side (pip waits on the package index more than
    # on the CPU), as a platform serving repos of these releases has them: each deploy below finds its
    # release's base by its content tag. (Building a missing base during a deploy: tests/test_mounting.py.)
    builder = images.DockerBuilder(Settings.from_env(os.environ).images)
    with ThreadPoolExecutor(len(RELEASES)) as pool:
        list(pool.map(lambda release: builder.ensure_base(release, lambda _: None), RELEASES))
    times = {"bases": time.monotonic() - started}
    with dagster_dev(project, project.docker_env) as url:
        env = {"DAGSTER_WEBSERVER_URL": url}
        for name, remote in remotes.items():
            added = make(project, "add-repo", f"REPO_URL={remote.url}", f"REPO_NAME={name}", **env)
            assert "building the base image" not in added.stdout + added.stderr  # found by its tag
        times["deploys"] = time.monotonic() - started - sum(times.values())

        base_tags = _registry_tags(registry, "dagster/base")
        for name, release in pinned.items():
            # Built FROM the base of its own release, which is in the registry, tagged by its content.
            [container] = client.containers.list(filters={"label": f"meta-deployer.repo={name}"})
            image = client.images.get(container.attrs["Config"]["Image"])
            layers = image.attrs["RootFS"]["Layers"]
            local = _local_tags(client, "dagster/base")
            bases = [client.images.get(f"{registry}/dagster/base:{t}") for t in base_tags
                     if t.startswith(f"{release}-") and f"{registry}/dagster/base:{t}" in local]
            assert any(layers[: len(b.attrs["RootFS"]["Layers"])] == b.attrs["RootFS"]["Layers"] for b in bases), (name, base_tags)
        for name in pinned:
            wait_for_location(url, name, assets=[f"asset_{name.replace('-', '_')}"], timeout=180)
        for name in pinned:
            asset = f"asset_{name.replace('-', '_')}"
            assert materialize_when_daemon_ready(url, name, [asset]) == "SUCCESS", name
            assert (project.work / "storage" / "repos" / name / "assets" / asset).is_file()

        times["runs"] = time.monotonic() - started - sum(times.values())
        print(f"phases (s): { {k: round(v) for k, v in times.items()} }")
        listed = make(project, "list-repos", **env).stdout
        for name, release in pinned.items():
            line = next(line for line in listed.splitlines() if line.startswith(name + " "))
            assert release in line.split(), line

        # Outside the window: refused before anything is built, tagged or pushed.
        before = project.workspace_bytes()
        old_name = unique_name("old-")
        repo_names.append(old_name)
        old = git_remote(name=old_name, files={"definitions.py": ASSET.format(asset="old", release="1.5.13"),
                                                "requirements.txt": "dagster==1.5.13\n"})
        refused = make(project, "add-repo", f"REPO_URL={old.url}", f"REPO_NAME={old_name}", check=False, **env)
        assert refused.returncode != 0
        error = refused.stdout + refused.stderr
        assert "dagster 1.5.13" in error and versions.window() in error and "requirements.txt" in error
        assert "building the base image" not in error
        assert project.workspace_bytes() == before
        assert not (project.repos / old_name).exists()
        assert client.images.list(filters={"label": f"meta-deployer.repo={old_name}"}) == []
        assert _registry_tags(registry, f"dagster/{old_name}") == []
        assert not [t for t in _registry_tags(registry, "dagster/base") if t.startswith("1.5.")]
        assert not [t for t in _local_tags(client, "dagster/base") if ":1.5." in t]
