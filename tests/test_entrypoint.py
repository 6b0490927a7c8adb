"""The location entry point as the ECS task runs it: code source and working directory from the
environment, relative to the server's current directory (the image's WORKDIR)."""

import os
import subprocess
import sys

from devkit import definitions_py
from meta_deployer.platforms import location
from meta_deployer.spec import parse_spec


def test_entrypoint_loads_the_code_source_named_in_the_environment(tmp_path):
    workdir = tmp_path / "app"
    (workdir / "pipelines").mkdir(parents=True)
    (workdir / "pipelines" / "defs.py").write_text(definitions_py("from_entrypoint"))
    spec = parse_spec(
        {"name": "sales", "git_url": "https://example.com/x.git", "python_file": "defs.py", "working_directory": "pipelines"},
        "config.yml",
    )
    env = {
        **os.environ,
        **location.code_source_env(spec),
        "META_DEPLOYER_WORKING_DIRECTORY": "pipelines",
        "META_DEPLOYER_REPO": "sales",
        "META_DEPLOYER_PREFIX": "repos/sales",
        "META_DEPLOYER_STORAGE_DIR": str(tmp_path / "storage"),
    }
    env.pop("DAGSTER_HOME", None)
    script = (
        "import meta_deployer_runtime.entrypoint as e, dagster as dg\n"
        "defs = next(v for v in vars(e).values() if isinstance(v, dg.Definitions))\n"
        "print(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()))\n"
        "print(type(defs.resources['io_manager']).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=workdir, env=env, capture_output=True, text=True, check=True).stdout
    assert "['from_entrypoint']" in out
    assert "RepoIOManager" in out  # the repo set none, so it gets the enforcing one
