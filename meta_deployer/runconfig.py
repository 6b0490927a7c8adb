"""Run configs of the deploy jobs, built from a spec (pure; no dagster import).

The CLI builds run configs before ``dagster job execute`` starts, so this
module stays light: a bad argument is reported in a fraction of a second.
"""

from __future__ import annotations

import re
from typing import Any

from meta_deployer.spec import RepoSpec


def spec_dict_from_run_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run config (flat) -> config.yml data."""
    data: dict[str, Any] = {k: cfg[k] for k in ("name", "git_url", "branch") if k in cfg}
    for key in ("python_file", "module_name", "package_name", "working_directory", "s3_prefix"):
        if cfg.get(key):
            data[key] = cfg[key]
    data["resources"] = {"cpu": cfg.get("cpu", 256), "memory": cfg.get("memory", 512)}
    if cfg.get("environment"):
        data["environment"] = [{"name": k, "value": v} for k, v in cfg["environment"].items()]
    if cfg.get("secrets"):
        data["secrets"] = [{"name": k, "valueFrom": v} for k, v in cfg["secrets"].items()]
    if cfg.get("read_access"):
        data["access"] = {"read": list(cfg["read_access"])}
    if cfg.get("locations"):
        data["locations"] = [{k: v for k, v in dict(loc).items() if v is not None} for loc in cfg["locations"]]
    return data


def run_config_from_spec(spec: RepoSpec) -> dict[str, Any]:
    """config.yml spec -> the flat run config of the ``clone`` op."""
    cfg: dict[str, Any] = {"name": spec.name, "git_url": spec.git_url, "branch": spec.branch}
    for key in ("python_file", "module_name", "package_name", "working_directory", "s3_prefix"):
        if getattr(spec, key):
            cfg[key] = getattr(spec, key)
    cfg["cpu"], cfg["memory"] = spec.resources.cpu, spec.resources.memory
    if spec.environment:
        cfg["environment"] = {e.name: e.value for e in spec.environment}
    if spec.secrets:
        cfg["secrets"] = {s.name: s.value_from for s in spec.secrets}
    if spec.access.read:
        cfg["read_access"] = list(spec.access.read)
    if spec.locations:
        cfg["locations"] = [loc.model_dump(exclude_none=True) for loc in spec.locations]
    return cfg


def deploy_run_config(spec: RepoSpec) -> dict[str, Any]:
    return {"ops": {"clone": {"config": run_config_from_spec(spec)}}}


def remove_run_config(name: str, purge: bool = False) -> dict[str, Any]:
    return {"ops": {"remove": {"config": {"name": name, "purge": purge}}}}


#: A deployment named by hand: a run id (a UUID) or a commit (7 to 40 hex digits).
_DEPLOYMENT_REF = re.compile(r"[0-9a-f]{7,40}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def deployment_ref_problem(value: str) -> str | None:
    """What is wrong with a deployment id or commit given for a rollback (None when it is well formed)."""
    if not _DEPLOYMENT_REF.fullmatch(value or ""):
        return (f"{value!r} is neither a deployment id (the run id that deployed it, such as "
                "0f8e2c1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b) nor a commit (7 to 40 lowercase hex digits)")
    return None


def rollback_run_config(name: str, to: str) -> dict[str, Any]:
    return {"ops": {"rollback_checkout": {"config": {"name": name, "to": to}}}}
