"""The repos_sensor under a real `dagster dev` daemon: a config that goes A -> B -> A -> B deploys
each change, the second B included (Dagster launches one run per run key, ever)."""

from __future__ import annotations

import time

import pytest

from devkit import dagster_dev, definitions_py
from meta_deployer.pipeline import Deployer
from meta_deployer.spec import parse_spec

pytestmark = pytest.mark.e2e


def wait_for_deployed(spec, timeout: float = 240) -> None:
    """Poll until the deployed record is the one of ``spec`` (its content hash)."""
    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        record = Deployer().registry.get(spec.name)
        if record is not None and record.spec_hash == spec.content_hash():
            return
        time.sleep(1)
    raise AssertionError(f"{spec.name} was not deployed as {spec.to_config()} within {timeout}s (record: {record})")


def test_the_daemon_deploys_a_reverted_revert(project, git_remote):
    remote = git_remote(files={"definitions.py": definitions_py("a")})
    base = {"name": "flip", "git_url": remote.url, "python_file": "definitions.py"}
    a = parse_spec(base, "A")
    b = parse_spec({**base, "environment": [{"name": "FLAVOUR", "value": "b"}]}, "B")
    config = project.repos / "flip" / "config.yml"
    config.parent.mkdir(parents=True)
    with dagster_dev(project):
        for spec in (a, b, a, b):
            config.write_text(__import__("yaml").safe_dump(spec.to_config(), sort_keys=False))
            wait_for_deployed(spec)
    assert Deployer().registry.get("flip").spec_hash == b.content_hash()
