"""The platform image (platforms/platform_image.py): its context and Dockerfile (pure), and a real build and
push through the docker builder to the local registry, returned by digest; a second call builds nothing."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
import requests
from dockerkit import Collect, engine_env

from meta_deployer import versions
from meta_deployer.platforms import images, platform_image
from meta_deployer.platforms.codebuild import render_context_buildspec
from meta_deployer.settings import ImageSettings

TINY_PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "tiny-platform"
version = "0.1.0"
"""


def tiny_project(root):
    """A git project standing in for this one (its own pins are what the image installs besides)."""
    root.mkdir()
    (root / "pyproject.toml").write_text(TINY_PYPROJECT)
    (root / "tiny_platform.py").write_text("X = 1\n")
    (root / "ignored.log").write_text("generated\n")
    (root / ".gitignore").write_text("*.log\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_the_dockerfile_installs_the_platform_family_and_moto_only_when_asked():
    text = platform_image.platform_dockerfile("python:3.12-slim")
    for package in ("dagster", "dagster-webserver", "dagster-postgres", "dagster-aws", "dagster-docker"):
        assert f"'{versions.requirement(package)}'" in text
    assert "moto" not in text
    assert "moto[server]==" in platform_image.platform_dockerfile("python:3.12-slim", with_moto=True)
    assert "COPY dagster.yaml /opt/dagster/home/dagster.yaml" in text and "ENV DAGSTER_HOME" not in text


def test_the_tag_follows_the_content_and_leaves_generated_files_out(tmp_path):
    root = tiny_project(tmp_path / "p")
    one = platform_image.platform_context("base:1", "a: 1\n", root=root)
    assert one.tag == platform_image.platform_context("base:1", "a: 1\n", root=root).tag
    assert one.tag != platform_image.platform_context("base:1", "a: 2\n", root=root).tag
    assert one.tag != platform_image.platform_context("base:2", "a: 1\n", root=root).tag
    assert one.tag != platform_image.platform_context("base:1", "a: 1\n", with_moto=True, root=root).tag
    (root / "tiny_platform.py").write_text("X = 2\n")
    assert one.tag != platform_image.platform_context("base:1", "a: 1\n", root=root).tag
    import io
    import tarfile

    names = tarfile.open(fileobj=io.BytesIO(one.tar)).getnames()
    assert "Dockerfile" in names and "dagster.yaml" in names and "src/tiny_platform.py" in names
    assert "src/ignored.log" not in names


def test_the_codebuild_buildspec_builds_and_pushes_the_context():
    spec = render_context_buildspec("123456789012.dkr.ecr.us-east-1.amazonaws.com/dagster/platform:abc", ecr=True)
    assert "docker build --network host -t 123456789012.dkr.ecr.us-east-1.amazonaws.com/dagster/platform:abc" in spec
    assert "docker push 123456789012.dkr.ecr.us-east-1.amazonaws.com/dagster/platform:abc" in spec
    assert "docker login" in spec


def test_build_and_push_with_the_docker_builder_then_nothing(tmp_path):
    env = {**os.environ, **engine_env()}
    settings = ImageSettings.from_env(env)
    builder = images.DockerBuilder(settings)
    root = tiny_project(tmp_path / "p")
    # A unique instance config: a tag no earlier run pushed (the layers before it are cached).
    context = platform_image.platform_context(
        os.environ.get("META_DEPLOYER_BASE_IMAGE") or "python:3.12-slim", f"# test {uuid.uuid4().hex}\n", root=root
    )
    log = Collect()
    first = platform_image.ensure_platform_image(builder, context, log)
    registry = env["META_DEPLOYER_REGISTRY"]
    assert first.built
    assert first.ref == f"{registry}/dagster/platform:{context.tag}"
    assert first.digest.startswith("sha256:") and first.pinned == f"{registry}/dagster/platform@{first.digest}"
    # The registry serves that digest for the tag.
    answer = requests.head(
        f"http://{registry}/v2/dagster/platform/manifests/{context.tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}, timeout=30,
    )
    assert answer.status_code == 200 and answer.headers["Docker-Content-Digest"] == first.digest

    again = Collect()
    second = platform_image.ensure_platform_image(builder, context, again)
    assert not second.built and second.pinned == first.pinned
    assert not any(line.startswith(("building", "pushing", "Step ")) for line in again.lines), again.lines


def test_without_a_registry_it_says_so(tmp_path):
    class NoRegistry:
        name = "docker"

        def registry(self):
            return None

    with pytest.raises(Exception, match="META_DEPLOYER_REGISTRY"):
        platform_image.ensure_platform_image(NoRegistry(), platform_image.platform_context("b", "", root=tiny_project(tmp_path / "p")), print)
