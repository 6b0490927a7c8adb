"""The house's layers point one way: checked by importing each layer alone in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SIDE_EFFECT_LIBRARIES = ("boto3", "botocore", "docker", "git")


def loaded_after(statement: str) -> set[str]:
    """Top-level package names and meta_deployer modules loaded by ``statement`` in a fresh python."""
    script = f"import sys\n{statement}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_the_runtime_imports_nothing_from_the_deployer_and_no_side_effect_library():
    modules = loaded_after(
        "import meta_deployer_runtime.contract, meta_deployer_runtime.io, meta_deployer_runtime.compute_logs, "
        "meta_deployer_runtime.location"
    )
    assert not {m for m in modules if m == "meta_deployer" or m.startswith("meta_deployer.")}
    assert not {m for m in modules if m.split(".")[0] in SIDE_EFFECT_LIBRARIES}
    assert "meta_deployer_runtime.io" in modules  # the import really happened


@pytest.mark.parametrize(
    "module",
    ["meta_deployer.platforms.aws.plan", "meta_deployer.platforms.aws.engine", "meta_deployer.platforms.aws.resources",
     "meta_deployer.spec", "meta_deployer.naming", "meta_deployer.model", "meta_deployer.workspace",
     "meta_deployer.replicas"],
)
def test_pure_modules_load_no_boto3_docker_git_or_runtime(module):
    modules = loaded_after(f"import {module}")
    assert module in modules
    assert not {m for m in modules if m.split(".")[0] in (*SIDE_EFFECT_LIBRARIES, "meta_deployer_runtime")}


def test_the_planner_and_its_kinds_import_only_the_bottom_layers():
    """resources/ and the planner import spec, naming, errors, model and settings, never the gateway or apply."""
    modules = loaded_after("import meta_deployer.platforms.aws.plan")
    ours = {m for m in modules if m.startswith("meta_deployer.")}
    allowed_roots = ("meta_deployer.spec", "meta_deployer.naming", "meta_deployer.errors", "meta_deployer.model",
                     "meta_deployer.settings", "meta_deployer.platforms.aws.settings", "meta_deployer.platforms.aws.engine",
                     "meta_deployer.platforms.aws.common", "meta_deployer.platforms.aws.resources",
                     "meta_deployer.platforms.aws.plan", "meta_deployer.platforms.aws", "meta_deployer.platforms",
                     "meta_deployer.versions", "meta_deployer.util")
    assert {m for m in ours if not m.startswith(allowed_roots)} == set()
    assert "meta_deployer.platforms.aws.gateway" not in ours and "meta_deployer.platforms.aws.apply" not in ours


def test_the_api_imports_no_deploy_step():
    """The REST API reaches Dagster over GraphQL only: no pipeline, platform, removal or Dagster itself."""
    modules = loaded_after("import meta_deployer.api.app, meta_deployer.api.server; meta_deployer.api.app.create_app()")
    assert "meta_deployer.api.app" in modules and "fastapi" in modules
    forbidden = ("meta_deployer.pipeline", "meta_deployer.platforms", "meta_deployer.removal", "meta_deployer.definitions",
                 "meta_deployer.sync", "meta_deployer.fanout", "dagster", "docker", "boto3")
    assert {m for m in modules if m.startswith(forbidden)} == set()
