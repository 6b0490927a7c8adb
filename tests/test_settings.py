"""The settings model (meta_deployer/settings.py) against the README's settings tables, its bounds and its defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meta_deployer.errors import SettingsError
from meta_deployer.settings import (
    DockerSettings,
    EcsSettings,
    ImageSettings,
    PlatformAwsSettings,
    Settings,
    SettingsGroup,
    env_var,
)

README = Path(__file__).resolve().parents[1] / "README.md"
GROUPS: dict[str, type[SettingsGroup]] = {
    "core": Settings,
    "docker": DockerSettings,
    "images": ImageSettings,
    "ecs": EcsSettings,
    "platform_aws": PlatformAwsSettings,
}
#: Variables the README tables name that other programs read themselves (not fields of the model).
READ_BY_OTHERS = {"DAGSTER_PORT", "DAGSTER_HOST", "AWS_REGION", "AWS_DEFAULT_REGION", "DOCKER_HOST"}
_VAR = re.compile(r"`([A-Z][A-Z0-9_]+)`")


def readme_rows() -> dict[str, list[tuple[str, str]]]:
    """Every row of the README tables headed ``| variable | default | meaning |``: var -> [(default, meaning)]."""
    rows: dict[str, list[tuple[str, str]]] = {}
    in_table = False
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")] if line.startswith("|") else []
        if cells == ["variable", "default", "meaning"]:
            in_table = True
            continue
        if not cells:
            in_table = False
        if not in_table or set(line) <= set("|-: "):
            continue
        var_cell, default_cell, meaning = cells
        variables = _VAR.findall(var_cell)
        defaults = default_cell.split(" / ")
        for i, var in enumerate(variables):
            default = defaults[i] if len(defaults) == len(variables) else default_cell
            rows.setdefault(var, []).append((default, meaning))
    return rows


def model_fields() -> list[tuple[str, str, str, object]]:
    """(group, field, variable, effective default) for every field read from the environment."""
    root = Path("/nonexistent-root")
    defaults = Settings.from_env({"META_DEPLOYER_ROOT": str(root)})
    out = []
    for group, model in GROUPS.items():
        values = defaults if group == "core" else getattr(defaults, group)
        for name, field in model.model_fields.items():
            var = env_var(field)
            if var is None:
                continue
            value = getattr(values, name)
            if isinstance(value, Path):
                value = value.relative_to(root).as_posix() if value != root else "."
            out.append((group, name, var, value))
    return out


def shown(value: object) -> str | None:
    """How the README shows a default: a literal in backticks, or None when the default is 'nothing'."""
    if value in (None, ()):
        return None
    if value == ".":
        return "the current directory"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


# -- (1) the model and the README tables back each other ------------------------------


@pytest.mark.parametrize(("group", "name", "var", "default"), model_fields(), ids=lambda v: str(v))
def test_every_field_is_a_readme_row_with_its_default_and_meaning(group, name, var, default):
    rows = readme_rows()
    assert var in rows, f"{group}.{name}: {var} is in no README settings table"
    field = GROUPS[group].model_fields[name]
    matching = [(d, m) for d, m in rows[var] if m == field.description]
    assert matching, f"{group}.{name}: its description is none of the README lines for {var}: {rows[var]}"
    cell = matching[0][0]
    expected = shown(default)
    if expected is None:
        assert not cell.startswith("`"), f"{var}: the model's default is unset, the README shows {cell}"
    elif expected.startswith("`"):
        assert cell == expected, f"{var}: the model's default is {expected}, the README shows {cell}"
    else:
        assert cell.startswith(expected), f"{var}: the README shows {cell}, expected {expected}"


def test_every_variable_of_the_readme_tables_is_a_field():
    fields = {var for _, _, var, _ in model_fields()}
    documented = set(readme_rows())
    assert {v for v in documented if v.startswith("META_DEPLOYER_")} <= fields
    assert documented - fields == READ_BY_OTHERS


def test_every_field_is_a_variable_a_group_or_derived():
    for group, model in GROUPS.items():
        for name, field in model.model_fields.items():
            assert env_var(field) or (field.description or "").startswith(("Group:", "Derived:")), f"{group}.{name}"


# -- (2) bad values name the variable and what would be valid --------------------------


BAD_VALUES = [
    ("META_DEPLOYER_PLATFORM", "k8s", "dev, docker, ecs"),
    ("META_DEPLOYER_API_RATE_LIMIT", "0", "at least 1"),
    ("META_DEPLOYER_API_MAX_BODY", "100", "at least 1024"),
    ("META_DEPLOYER_RELOAD_TIMEOUT", "0", "positive"),
    ("META_DEPLOYER_RELOAD_TIMEOUT", "soon", "number"),
    ("META_DEPLOYER_DEV_HEALTH_TIMEOUT", "0", "positive"),
    ("META_DEPLOYER_DEV_DRAIN_TIMEOUT", "-1", "at least 0"),
    ("META_DEPLOYER_DOCKER_NETWORK", "overlay", "host, bridge"),
    ("META_DEPLOYER_DOCKER_PORT_BASE", "80", "at least 1024"),
    ("META_DEPLOYER_DOCKER_PORT_BASE", "64000", "1024..65535"),
    ("META_DEPLOYER_DOCKER_PORT_PAIRS", "0", "at least 1"),
    ("META_DEPLOYER_DOCKER_PORT_PAIRS", "1.5", "whole number"),
    ("META_DEPLOYER_HEALTH_TIMEOUT", "-1", "at least 0"),
    ("META_DEPLOYER_DOCKER_POLL_INTERVAL", "-0.5", "at least 0"),
    ("META_DEPLOYER_DOCKER_DRAIN_TIMEOUT", "x", "number"),
    ("META_DEPLOYER_DOCKER_CONTAINER_CONTEXT", "{not json", "JSON"),
    ("META_DEPLOYER_DOCKER_LOCATION_ENV", "META_DEPLOYER_GIT_TOKEN_FILE", "deployer's own"),
    ("META_DEPLOYER_DOCKER_LOCATION_ENV", "NOT-A-NAME", "not an environment variable name"),
    ("META_DEPLOYER_REGISTRY", "https://r.example", "without a scheme"),
    ("META_DEPLOYER_BUILD_TIMEOUT", "0", "positive"),
    ("META_DEPLOYER_VALIDATE_TIMEOUT", "-5", "positive"),
    ("META_DEPLOYER_LOG_RETENTION_DAYS", "31", "CloudWatch retention; use one of 1, 3, 5"),
    ("META_DEPLOYER_ECS_DESIRED_COUNT", "-1", "at least 0"),
    ("META_DEPLOYER_ECS_STABILITY_TIMEOUT", "long", "number"),
    ("META_DEPLOYER_ECS_VALIDATE_TIMEOUT", "-1", "at least 0"),
    ("META_DEPLOYER_ECS_POLL_INTERVAL", "-1", "at least 0"),
    ("META_DEPLOYER_ECS_HEALTH_CHECK_GRACE", "2m", "whole number"),
    ("META_DEPLOYER_ECS_KEEP_REVISIONS", "0", "at least 1"),
    ("META_DEPLOYER_AWS_RETRY_MODE", "legacy", "standard, adaptive"),
    ("META_DEPLOYER_AWS_MAX_ATTEMPTS", "0", "at least 1"),
    ("META_DEPLOYER_TEMP_EXPIRY_DAYS", "0", "at least 1"),
    ("META_DEPLOYER_WEBSERVER_PORT", "0", "at least 1"),
    ("META_DEPLOYER_WEBSERVER_PORT", "70000", "at most 65535"),
    ("META_DEPLOYER_WEBSERVERS", "k8s:web", "docker:<label>, or ecs:<cluster>/<service>"),
    ("META_DEPLOYER_WEBSERVERS", "ecs:dagster", "ecs:<cluster>/<service>"),
    ("META_DEPLOYER_WEBSERVERS", "docker:", "one or more labels"),
    ("META_DEPLOYER_WEBSERVERS", "http://u:p@web:3000", "carries a user"),
    ("META_DEPLOYER_STATE", "etcd", "local, s3"),
    ("META_DEPLOYER_LEASE_TTL", "0", "positive"),
    ("META_DEPLOYER_LEASE_TIMEOUT", "an hour", "number"),
    ("META_DEPLOYER_BUILDER", "kaniko", "docker, codebuild"),
    ("META_DEPLOYER_CODEBUILD_PROJECT", "-starts-with-dash", "CodeBuild project name"),
    ("META_DEPLOYER_CODEBUILD_PROJECT", "x" * 151, "2-150"),
    ("META_DEPLOYER_CODEBUILD_PROJECT", "has space", "CodeBuild project name"),
    ("META_DEPLOYER_CODEBUILD_COMPUTE_TYPE", "BUILD_LAMBDA_1GB", "BUILD_GENERAL1_SMALL"),
    ("META_DEPLOYER_CODEBUILD_POLL_INTERVAL", "-1", "at least 0"),
    ("META_DEPLOYER_PG_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:pg", "full ARN"),
    ("META_DEPLOYER_PLATFORM_WEBSERVER_COUNT", "0", "at least 1"),
    ("META_DEPLOYER_PLATFORM_AUTH", "basic", "oidc, cognito"),
    ("META_DEPLOYER_PLATFORM_ALLOWED_SECURITY_GROUPS", "sg-1,default", "not a security group id"),
    ("META_DEPLOYER_OIDC_CLIENT_SECRET_ARN", "s3cr3t", "Secrets Manager secret ARN"),
]


@pytest.mark.parametrize(("var", "value", "hint"), BAD_VALUES)
def test_a_bad_value_names_the_variable_and_what_is_valid(var, value, hint):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({var: value})
    message = str(info.value)
    assert var in message and hint in message


def test_every_bounded_field_has_a_bad_value_case():
    bounded = {
        var
        for _, name, var, default in model_fields()
        if isinstance(default, (int, float)) or name in ("platform", "network", "retry_mode", "container_context", "builder", "codebuild_project", "codebuild_compute_type")
    }
    assert bounded <= {var for var, _, _ in BAD_VALUES}


def test_replace_validates_like_the_environment():
    with pytest.raises(SettingsError, match="META_DEPLOYER_ECS_KEEP_REVISIONS"):
        EcsSettings().replace(keep_revisions=0)
    assert EcsSettings().replace(desired_count=2).desired_count == 2


# -- (3) the defaults are today's -----------------------------------------------------------


def test_defaults_are_unchanged(tmp_path):
    s = Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path)})
    assert (s.platform, s.root, s.repos_dir, s.workspace, s.work_dir) == (
        "dev",
        tmp_path.resolve(),
        tmp_path.resolve() / "repos",
        tmp_path.resolve() / "workspace" / "workspace.yaml",
        tmp_path.resolve() / ".meta_deployer",
    )
    assert (s.webserver_url, s.reload_timeout_s, s.bucket, s.git_token_file, s.aws_endpoint_url) == (
        "http://localhost:3000", 120.0, "dagster-storage", None, None,
    )
    assert s.storage_dir == tmp_path.resolve() / ".meta_deployer" / "storage"
    assert s.docker == DockerSettings(
        network="host", port_base=20000, port_pairs=1000, health_timeout_s=180.0, poll_interval_s=0.5,
        drain_timeout_s=60.0, dagster_home=None, container_context=None,
    )
    i = s.images
    assert (i.registry, i.base_image, i.build_timeout_s, i.validate_timeout_s, i.ecr, i.extra_requirements) == (
        None, "python:3.12-slim", 1800.0, 300.0, False, (),
    )
    e = s.ecs
    assert (e.cluster, e.subnets, e.security_groups, e.vpc_id, e.namespace, e.execution_role_arn) == (
        "dagster", (), (), None, "local", None,
    )
    assert (e.bucket, e.registry, e.lb_listener_arn, e.log_retention_days, e.desired_count) == (
        "dagster-storage", None, None, 30, 1,
    )
    assert (e.stability_timeout_s, e.poll_interval_s, e.health_check_grace_s, e.keep_revisions) == (600.0, 10.0, 120, 3)
    assert (e.retry_mode, e.max_attempts, e.temp_expiry_days) == ("standard", 8, 7)
    assert e == EcsSettings()


def test_ecs_deploy_fingerprint_is_todays():
    """Deployed services carry it in a tag: a changed value would redeploy every service."""
    assert EcsSettings().deploy_fingerprint() == "35fe70a2eaa47781"
    changed = EcsSettings(
        subnets=("a", "b"), security_groups=("sg",), registry="r", lb_listener_arn="l", vpc_id="v",
        execution_role_arn="e", desired_count=2,
    )
    assert changed.deploy_fingerprint() == "d8967fb95c276191"
    assert EcsSettings(stability_timeout_s=1, max_attempts=2).deploy_fingerprint() == "35fe70a2eaa47781"


def test_derived_values():
    assert Settings.from_env({}).storage_bucket is None
    assert Settings.from_env({"META_DEPLOYER_BUCKET": ""}).storage_bucket is None  # empty is unset
    explicit = Settings.from_env({"META_DEPLOYER_BUCKET": "dagster-storage", "AWS_ENDPOINT_URL": "http://moto:5000"})
    assert explicit.storage_bucket == explicit.images.storage_bucket == "dagster-storage"
    assert explicit.aws_endpoint_url == "http://moto:5000"
    assert explicit.images.extra_requirements and not Settings.from_env({}).images.extra_requirements
    ecs = Settings.from_env({"META_DEPLOYER_PLATFORM": "ecs", "META_DEPLOYER_SUBNETS": "b, a,"})
    assert ecs.images.ecr and len(ecs.images.extra_requirements) == 2 and ecs.ecs.subnets == ("a", "b")
    assert not ecs.with_platform("docker").images.ecr
    moved = Settings.from_env({"META_DEPLOYER_ROOT": "/srv/md", "META_DEPLOYER_WORK_DIR": "/var/md"})
    assert moved.storage_dir == Path("/var/md/storage") and moved.repos_dir == Path("/srv/md/repos")


def test_only_from_env_reads_the_environment(monkeypatch):
    monkeypatch.setenv("META_DEPLOYER_ECS_CLUSTER", "from-env")
    monkeypatch.setenv("META_DEPLOYER_DOCKER_NETWORK", "bridge")
    assert EcsSettings().cluster == "dagster" and DockerSettings().network == "host"
    assert Settings.from_env().ecs.cluster == "from-env" and Settings.from_env().docker.network == "bridge"
    assert Settings.from_env({}).ecs.cluster == "dagster"


# -- (4) where state is kept -------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "backend"),
    [
        ({}, "local"),
        ({"META_DEPLOYER_BUCKET": "b"}, "local"),  # dev stays offline even with a bucket for storage
        ({"META_DEPLOYER_PLATFORM": "docker"}, "local"),  # docker without a bucket: storage is a local folder
        ({"META_DEPLOYER_PLATFORM": "docker", "META_DEPLOYER_BUCKET": "b"}, "s3"),
        ({"META_DEPLOYER_PLATFORM": "ecs"}, "s3"),
        ({"META_DEPLOYER_PLATFORM": "ecs", "META_DEPLOYER_STATE": "local"}, "local"),
        ({"META_DEPLOYER_STATE": "s3"}, "s3"),
    ],
)
def test_state_is_kept_in_the_storage_root_unless_set(env, backend):
    assert Settings.from_env({"META_DEPLOYER_ROOT": "/tmp", **env}).state_backend == backend
