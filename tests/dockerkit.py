"""Helpers for the tests that need a real Docker engine and registry (see .ci/services.sh).

Without an engine these tests skip with a message saying how to get one; when
the environment variable ``CI`` is set they fail instead, so CI can never
pass by skipping them.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from meta_deployer.platforms.base import Checkout
from meta_deployer.settings import Settings
from meta_deployer.spec import RepoSpec, parse_spec

HOW = "source .ci/services.sh (as root) to start a Docker engine, a registry and the base image"
#: Ports the test containers use, away from the platform's default range.
TEST_PORT_BASE = "24000"  # outside the ephemeral range, apart from the default 20000..21999
TEST_PORT_PAIRS = "400"

DEFINITIONS = '''\
import dagster as dg


@dg.asset
def {asset}() -> int:
    return {value}


defs = dg.Definitions(assets=[{asset}])
'''

#: Imports fine while the definitions are validated (``DAGSTER_IS_DEFS_VALIDATION_CLI``), crashes when served.
FAILS_WHEN_SERVED = '''\
import os

import dagster as dg

if not os.environ.get("DAGSTER_IS_DEFS_VALIDATION_CLI"):
    raise RuntimeError("this version only crashes when it is served")


@dg.asset
def crashy() -> int:
    return 1


defs = dg.Definitions(assets=[crashy])
'''

BROKEN = "import dagster as dg\nimport no_such_module_anywhere\n\ndefs = dg.Definitions()\n"

OWN_DOCKERFILE = {
    "Dockerfile": (
        "FROM python:3.12-slim\n"
        "WORKDIR /app\n"
        "COPY . .\n"
        "RUN pip install --no-cache-dir --progress-bar off -e .\n"
    ),
    ".dockerignore": "Dockerfile\n.git\n",
    "pyproject.toml": (
        "[build-system]\n"
        'requires = ["setuptools>=64"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        'name = "src-layout-project"\n'
        'version = "0.1.0"\n'
        'dependencies = ["dagster==1.13.27"]\n\n'
        "[tool.setuptools.packages.find]\n"
        'where = ["src"]\n'
    ),
    "src/src_layout_project/__init__.py": "",
    "src/src_layout_project/definitions.py": DEFINITIONS.format(asset="packaged", value=7),
}


def missing(reason: str) -> None:
    """Skip on a laptop, fail in CI (``CI`` set): Docker tests must never be skipped there."""
    message = f"{reason}; {HOW}"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so this test may not be skipped: {message}")
    pytest.skip(message)


def engine_env() -> dict[str, str]:
    """The environment reaching the engine and registry, or skip/fail (see :func:`missing`)."""
    from meta_deployer.platforms import images

    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        missing("no Docker engine: DOCKER_HOST is not set")
    try:
        images.docker_client(dict(os.environ)).close()
    except images.EngineUnavailable as exc:
        missing(f"the Docker engine does not answer ({exc.__class__.__name__})")
    registry = os.environ.get("META_DEPLOYER_TEST_REGISTRY")
    if not registry:
        missing("no test registry: META_DEPLOYER_TEST_REGISTRY is not set")
    return {"DOCKER_HOST": os.environ.get("DOCKER_HOST", ""), "META_DEPLOYER_REGISTRY": registry}


def unique_name(prefix: str = "t") -> str:
    """A repo name no other test run uses (containers and images are per name)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def make_settings(root: Path, **extra: str) -> Settings:
    """Settings of a throw-away project under ``root`` on the docker platform."""
    env = {
        **os.environ,
        **engine_env(),
        "META_DEPLOYER_ROOT": str(root),
        "META_DEPLOYER_REPOS_DIR": str(root / "repos"),
        "META_DEPLOYER_WORKSPACE": str(root / "workspace" / "workspace.yaml"),
        "META_DEPLOYER_WORK_DIR": str(root / ".meta_deployer"),
        "META_DEPLOYER_PLATFORM": "docker",
        "DAGSTER_HOME": str(root / "dagster_home"),
        "META_DEPLOYER_DOCKER_PORT_BASE": TEST_PORT_BASE,
        "META_DEPLOYER_DOCKER_PORT_PAIRS": TEST_PORT_PAIRS,
        "META_DEPLOYER_HEALTH_TIMEOUT": "120",
        "META_DEPLOYER_DOCKER_POLL_INTERVAL": "0.2",
        "META_DEPLOYER_DOCKER_DRAIN_TIMEOUT": "0",
        **extra,
    }
    return Settings.from_env(env)


def spec_for(name: str, url: str, **fields: str) -> RepoSpec:
    return parse_spec({"name": name, "git_url": url, **fields}, f"test spec {name}")


def checkout(settings: Settings, spec: RepoSpec) -> Checkout:
    """Converge a real checkout of ``spec`` (git over file://)."""
    from meta_deployer import gitops

    path = settings.checkout_path(spec.name)
    commit, changed = gitops.converge(spec.git_url, spec.branch, path)
    return Checkout(spec.name, path, commit, spec.branch, spec.git_url, changed)


def cleanup(names: list[str]) -> None:
    """Remove every container and local image of the test repos ``names``."""
    env = {**os.environ}
    for name in names:
        for kind in ("container", "image"):
            ids = subprocess.run(
                ["docker", kind, "ls", "-aq", "--filter", f"label=meta-deployer.repo={name}"],
                capture_output=True, text=True, env=env, check=False,
            ).stdout.split()
            if ids:
                subprocess.run(["docker", "rm" if kind == "container" else "rmi", "-f", *ids],
                               capture_output=True, env=env, check=False)


@pytest.fixture
def repo_names() -> Iterator[list[str]]:
    """Collects test repo names; their containers and images are removed afterwards."""
    names: list[str] = []
    yield names
    cleanup(names)


class Collect:
    """A ``log`` callable that keeps every line (and shows them with ``pytest -s``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        print(line)
