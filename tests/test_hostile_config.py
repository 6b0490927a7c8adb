"""config.yml written by a hostile tenant: each case fails fast, with bounded memory, with an
error that names the file and what would be right, and never stops another repo (issue 9)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_sensor_context

from meta_deployer.errors import SpecError
from meta_deployer.scan import scan_repo_configs
from meta_deployer.spec import MAX_CONFIG_BYTES, MAX_LIST_ITEMS, MAX_YAML_NODES, dump_spec, load_spec, parse_spec

GOOD = "name: {name}\ngit_url: https://example.com/{name}.git\npython_file: defs.py\n"

BILLION_LAUGHS = GOOD.format(name="laughs") + "environment:\n  - name: LOL\n    value: &a0 lol\n" + "".join(
    f"  - name: LOL{i}\n    value: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10)
)
NOT_UTF8 = GOOD.format(name="latin").encode() + b"environment:\n  - name: CITY\n    value: \xe9vry\n"


def write(repos: Path, name: str, content: str | bytes) -> Path:
    path = repos / name / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def write_50mb(repos: Path, name: str = "huge") -> Path:
    """A 50 MB config.yml of valid YAML (a list that parses for minutes and gigabytes)."""
    path = repos / name / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        handle.write(GOOD.format(name=name) + "environment:\n")
        line = "  - {name: A, value: " + "x" * 64 + "}\n"
        handle.write(line * (50 * 1024 * 1024 // len(line)))
    return path


def fails_fast(path: Path) -> str:
    """Load ``path``; it must fail early, with little memory; return the error.

    "Early" is counted, not timed (a timing assert fails on a busy CI machine): the loader may
    compose at most MAX_YAML_NODES + 1 values before it gives up, whatever the file holds."""
    from meta_deployer import spec as spec_module

    composed = 0
    compose_node = spec_module._ConfigLoader.compose_node

    def counting(self, parent, index):  # observes the real loader; changes nothing it does
        nonlocal composed
        composed += 1
        return compose_node(self, parent, index)

    mp = pytest.MonkeyPatch()
    mp.setattr(spec_module._ConfigLoader, "compose_node", counting)
    try:
        with pytest.raises(SpecError) as info:
            load_spec(path)
    finally:
        mp.undo()
    assert composed <= MAX_YAML_NODES + 1, composed
    tracemalloc.start()
    try:
        with pytest.raises(SpecError):
            load_spec(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak  # bounded: megabytes, not the gigabytes of an expansion
    message = str(info.value)
    assert str(path) in message and len(message) < 4000
    return message


# -- the loader -------------------------------------------------------------------


def test_billion_laughs_is_refused_at_once(tmp_path):
    message = fails_fast(write(tmp_path, "laughs", BILLION_LAUGHS))
    assert "anchors (&name) and aliases (*name) are not allowed" in message


def test_an_alias_alone_is_refused(tmp_path):
    text = "name: &n alias\ngit_url: https://example.com/x.git\nbranch: *n\n"
    assert "aliases" in fails_fast(write(tmp_path, "alias", text))


def test_a_50mb_file_is_refused_before_it_is_read(tmp_path):
    message = fails_fast(write_50mb(tmp_path))
    assert f"at most {MAX_CONFIG_BYTES} bytes" in message


def test_bytes_that_are_not_utf8_name_the_offset(tmp_path):
    message = fails_fast(write(tmp_path, "latin", NOT_UTF8))
    offset = NOT_UTF8.index(b"\xe9")
    assert f"not UTF-8 at byte {offset}" in message


def test_duplicate_keys_name_the_key_and_line(tmp_path):
    text = GOOD.format(name="dupe") + "branch: main\nbranch: release\n"
    message = fails_fast(write(tmp_path, "dupe", text))
    assert "duplicate key 'branch' (first set on line 4)" in message and "line 5" in message
    nested = GOOD.format(name="dupe") + "resources:\n  cpu: 256\n  cpu: 4096\n"
    assert "duplicate key 'cpu'" in fails_fast(write(tmp_path, "dupe", nested))


def test_merge_keys_and_deep_nesting_are_refused(tmp_path):
    merge = GOOD.format(name="merge") + "resources:\n  <<: {cpu: 512}\n  memory: 1024\n"
    assert "merge keys" in fails_fast(write(tmp_path, "merge", merge))
    deep = GOOD.format(name="deep") + "access: " + "[" * 20000 + "]" * 20000 + "\n"
    assert "nested deeper than" in fails_fast(write(tmp_path, "deep", deep))


def test_long_lists_and_many_values_stop_the_parser_early(tmp_path):
    """Within the byte cap, pure-Python YAML still costs tens of microseconds a value: the
    parser stops at the first list over the cap, or at MAX_YAML_NODES values in all."""
    many = GOOD.format(name="many") + "environment:\n" + "  - {name: A, value: b}\n" * 2700
    assert f"more than {MAX_LIST_ITEMS} items" in fails_fast(write(tmp_path, "many", many[:MAX_CONFIG_BYTES]))
    row = "  - [" + ",".join(["[" + ",".join(["1"] * 20) + "]"] * 10) + "]\n"
    wide = GOOD.format(name="wide") + "environment:\n" + row * 99
    assert f"more than {MAX_YAML_NODES} values" in fails_fast(write(tmp_path, "wide", wide))


def test_the_largest_valid_spec_still_loads(tmp_path):
    full = parse_spec(
        {
            "name": "full", "git_url": "https://example.com/x.git", "python_file": "d.py",
            "environment": [{"name": f"VAR_{i}", "value": f"v{i}"} for i in range(MAX_LIST_ITEMS)],
            "secrets": [{"name": f"S_{i}", "valueFrom": f"arn:aws:ssm:us-east-1:123456789012:parameter/dagster/full/s{i}"}
                        for i in range(MAX_LIST_ITEMS)],
            "access": {"read": [f"r{i}" for i in range(MAX_LIST_ITEMS)]},
        },
        "x",
    )
    assert load_spec(write(tmp_path, "full", dump_spec(full))) == full


@pytest.mark.parametrize("field", ["environment", "secrets", "access"])
def test_lists_are_capped(field):
    n = MAX_LIST_ITEMS + 1
    values = {
        "environment": [{"name": f"V{i}", "value": "x"} for i in range(n)],
        "secrets": [{"name": f"S{i}", "valueFrom": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/a/s{i}"} for i in range(n)],
        "access": {"read": [f"r{i}" for i in range(n)]},
    }
    with pytest.raises(SpecError) as info:
        parse_spec({"name": "a", "git_url": "https://example.com/a.git", field: values[field]}, "repos/a/config.yml")
    assert f"has {n} items; at most {MAX_LIST_ITEMS} are allowed" in str(info.value)
    ok = {k: (v[:MAX_LIST_ITEMS] if isinstance(v, list) else {"read": v["read"][:MAX_LIST_ITEMS]}) for k, v in values.items()}
    parse_spec({"name": "a", "git_url": "https://example.com/a.git", field: ok[field]}, "x")


# -- the scan (sensor, validate, list-repos, sync) ----------------------------------------


@pytest.fixture
def repos(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "repos"
    path.mkdir()
    monkeypatch.setenv("META_DEPLOYER_ROOT", str(tmp_path))
    monkeypatch.setenv("META_DEPLOYER_REPOS_DIR", str(path))
    monkeypatch.setenv("META_DEPLOYER_PLATFORM", "dev")
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", "http://127.0.0.1:9")  # nothing listens: no wait
    return path


def hostile_repos(repos: Path) -> None:
    write(repos, "alpha", GOOD.format(name="alpha"))
    write(repos, "latin", NOT_UTF8)
    write(repos, "laughs", BILLION_LAUGHS)
    write_50mb(repos, "huge")
    write(repos, "zulu", GOOD.format(name="zulu"))


def test_one_bad_file_never_hides_another_valid_one(repos):
    hostile_repos(repos)
    scanned = scan_repo_configs(repos)
    assert {n for n, s in scanned.items() if s.spec} == {"alpha", "zulu"}
    assert "not UTF-8 at byte" in scanned["latin"].error and "latin/config.yml" in scanned["latin"].error
    assert "aliases" in scanned["laughs"].error and "laughs/config.yml" in scanned["laughs"].error
    assert "at most" in scanned["huge"].error and "huge/config.yml" in scanned["huge"].error


def test_the_sensor_deploys_the_valid_repos_in_the_same_tick(repos):
    from meta_deployer import definitions as d

    hostile_repos(repos)
    with DagsterInstance.ephemeral() as instance:
        result = d.repos_sensor(build_sensor_context(instance=instance))
    assert sorted(r.tags["meta_deployer/repo"] for r in result.run_requests) == ["alpha", "zulu"]


def test_validate_and_list_repos_report_instead_of_crashing(repos, capsys):
    from meta_deployer.cli import main

    hostile_repos(repos)
    assert main(["validate"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "not UTF-8 at byte" in err and "aliases" in err
    assert "ok       " in out and "alpha/config.yml" in out
    assert main(["list-repos"]) == 0
    out = capsys.readouterr().out
    assert out.count("invalid config.yml") == 3 and "https://example.com/alpha.git" in out


# -- git URLs, environment names, secrets ------------------------------------------------

BASE = {"name": "sales", "git_url": "https://example.com/sales.git"}


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "repos/sales/config.yml")
    assert "repos/sales/config.yml" in str(info.value)
    return dict(info.value.problems)


@pytest.mark.parametrize(
    "url",
    [
        "https://ghp_token123@github.com/acme/x.git",
        "https://x-access-token:ghp_token123@github.com/acme/x.git",
        "http://user@git.example.com/x.git",
        "https://@github.com/x.git",
    ],
)
def test_user_info_in_an_http_url_is_refused(url):
    message = problems({**BASE, "git_url": url})["git_url"]
    assert "META_DEPLOYER_GIT_TOKEN_FILE" in message and "https://host/path" in message


@pytest.mark.parametrize("url", ["git@github.com:acme/x.git", "ssh://git@github.com/acme/x.git"])
def test_ssh_users_stay_allowed(url):
    assert parse_spec({**BASE, "git_url": url}, "x").git_url == url


STARTUP_NAMES = [
    "PATH", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONWARNINGS", "PYTHONUSERBASE", "LD_PRELOAD",
    "LD_LIBRARY_PATH", "LD_AUDIT", "HOME", "SHELL", "IFS", "BASH_ENV", "ENV", "GIT_SSH_COMMAND", "GIT_DIR",
    "DYLD_INSERT_LIBRARIES", "VIRTUAL_ENV",
]


@pytest.mark.parametrize("name", STARTUP_NAMES)
def test_names_that_change_how_the_code_server_starts_are_refused(name):
    found = problems({**BASE, "environment": [{"name": name, "value": "/tmp/evil"}]})
    assert "would change how the code server itself starts" in found["environment.0.name"]
    assert "use a name of your own" in found["environment.0.name"]
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/sales/x"
    assert "code server" in problems({**BASE, "secrets": [{"name": name, "valueFrom": arn}]})["secrets.0.name"]


def test_names_that_only_contain_those_words_are_fine():
    env = [{"name": n, "value": "1"} for n in ("MY_PATH", "SALES_HOME", "APP_ENV", "ENVIRONMENT", "PYTHON_VERSION_X"[7:])]
    assert len(parse_spec({**BASE, "environment": env}, "x").environment) == 5


SM = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"
SSM = "arn:aws:ssm:us-east-1:123456789012:parameter"


@pytest.mark.parametrize(
    "repo, arn",
    [
        ("sales", f"{SM}dagster/finance-db"),
        ("sales", f"{SM}dagster/finance/db"),
        ("sales", f"{SM}dagster/db"),
        ("sales", f"{SM}sales/db"),
        ("sales", f"{SM}dagster/sales"),
        ("sales", f"{SM}dagster/sales/"),
        ("sales", f"{SM}dagster/sales-evil/db"),
        ("fin", f"{SM}dagster/finance/db"),
        ("sales", f"{SSM}/dagster/finance/db"),
        ("sales", f"{SSM}/sales/db"),
        ("sales", f"{SSM}/dagster/salesx/db"),
        ("sales", f"{SM}dagster/sharedx/db"),
    ],
)
def test_another_repos_secret_is_refused(repo, arn):
    with pytest.raises(SpecError) as info:
        parse_spec({"name": repo, "git_url": "https://example.com/x.git", "secrets": [{"name": "DB", "valueFrom": arn}]}, "c.yml")
    ((field, message),) = info.value.problems
    assert field == "secrets" and "secrets[0].valueFrom" in message and repr(arn) in message
    assert f"dagster/{repo}/<secret>" in message and "dagster/shared/<secret>" in message
    assert f"/dagster/{repo}/<parameter>" in message and "/dagster/shared/<parameter>" in message


@pytest.mark.parametrize(
    "arn",
    [f"{SM}dagster/sales/db", f"{SM}dagster/sales/db-AbCdEf", f"{SM}dagster/shared/ca", f"{SSM}/dagster/sales/db",
     f"{SSM}/dagster/shared/ca", "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:dagster/sales/x"],
)
def test_the_repos_own_and_shared_secrets_are_allowed(arn):
    spec = parse_spec({**BASE, "secrets": [{"name": "DB", "valueFrom": arn}]}, "x")
    assert spec.secrets[0].value_from == arn


def test_errors_never_echo_a_whole_value(tmp_path):
    big = "x" * (MAX_CONFIG_BYTES // 2 - 1000)
    text = f"name: big\ngit_url: https://example.com/x.git\nbranch: [{big}]\nenvironment:\n  - name: {big}\n    value: a\n"
    message = fails_fast(write(tmp_path, "big", text))
    assert "characters cut" in message


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"name": "sales\n"}, "name"),
        ({"environment": [{"name": "REGION\n", "value": "x"}]}, "environment"),
        ({"module_name": "sales.defs\n", "python_file": None}, "module_name"),
        ({"access": {"read": ["finance\n"]}}, "access"),
        ({"secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dagster/sales/db\n"}]}, "secrets"),
    ],
    ids=["name", "env-name", "module", "read", "secret-arn"],
)
def test_a_value_ending_in_a_newline_is_refused(fields, field):
    """``$`` matches before a final newline: every pattern must anchor with ``\\Z``."""
    from meta_deployer.errors import SpecError
    from meta_deployer.spec import parse_spec

    data = {"name": "sales", "git_url": "https://example.com/s.git", "python_file": "d.py", **fields}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(SpecError) as err:
        parse_spec(data, "config.yml")
    assert field in str(err.value)


def test_repo_names_ending_in_a_newline_are_refused_everywhere():
    from meta_deployer import naming
    from meta_deployer_runtime.contract import name_problem

    assert naming.name_problem("finance\n") and name_problem("finance\n")


@pytest.mark.parametrize("var", ["REPO_URL", "REPO_NAME", "BRANCH", "PYTHON_FILE"])
def test_a_make_argument_never_runs_a_command(project, tmp_path, var):
    """Make expands `$(shell ...)` in a variable it exports; the Makefile pins each argument to its text."""
    from devkit import run_make

    marker = tmp_path / "pwned"
    args = {"REPO_URL": "https://example.com/x.git", "REPO_NAME": "mk", "BRANCH": "main", "PYTHON_FILE": "d.py"}
    args[var] = args[var] + f"$(shell touch {marker})"
    result = run_make(project, "add-repo", *(f"{k}={v}" for k, v in args.items()), "DRY_RUN=1", check=False)
    assert not marker.exists()
    assert result.returncode != 0 and var.lower().replace("repo_", "").replace("url", "git_url") in (result.stdout + result.stderr).lower()


def test_a_config_yml_that_is_a_link_is_refused_and_never_read(tmp_path):
    from meta_deployer.errors import SpecError
    from meta_deployer.scan import scan_repo_configs
    from meta_deployer.spec import load_spec

    secret = tmp_path / "elsewhere" / "record.json"
    secret.parent.mkdir()
    secret.write_text('{"name": "victim", "commit": "c0ffee"}')
    repos = tmp_path / "repos"
    (repos / "thief").mkdir(parents=True)
    (repos / "thief" / "config.yml").symlink_to(secret)
    (repos / "linked").symlink_to(secret.parent, target_is_directory=True)
    (secret.parent / "config.yml").write_text("name: linked\ngit_url: https://example.com/x.git\n")
    for path in (repos / "thief" / "config.yml", repos / "linked" / "config.yml"):
        with pytest.raises(SpecError, match="symbolic link") as err:
            load_spec(path)
        assert "c0ffee" not in str(err.value)
    scanned = scan_repo_configs(repos)
    assert all(item.spec is None and "symbolic link" in item.error for item in scanned.values())


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("git_url", "ssh://-oProxyCommand=touch${IFS}x/repo.git", "starting with '-'"),
        ("git_url", "ssh://git@-oProxyCommand=x/repo.git", "starting with '-'"),
        ("branch", "b" * 10_000, "at most"),
    ],
    ids=["ssh-option-host", "ssh-option-host-with-user", "huge-branch"],
)
def test_option_like_hosts_and_huge_branches_are_refused(field, value, fragment):
    from meta_deployer.errors import SpecError
    from meta_deployer.spec import parse_spec

    data = {"name": "sales", "git_url": "https://example.com/s.git", "python_file": "d.py", field: value}
    with pytest.raises(SpecError) as err:
        parse_spec(data, "config.yml")
    assert field in str(err.value) and fragment in str(err.value)


def test_a_nul_in_an_environment_value_is_refused_by_the_spec():
    from meta_deployer.errors import SpecError
    from meta_deployer.spec import parse_spec

    data = {"name": "sales", "git_url": "https://example.com/s.git", "python_file": "d.py",
            "environment": [{"name": "REGION", "value": "eu\x00west"}]}
    with pytest.raises(SpecError, match="environment.*NUL"):
        parse_spec(data, "config.yml")
