"""RepoSpec: every rule, and errors that name the file, the field and what is valid."""

from pathlib import Path

import pytest

from meta_deployer.errors import SpecError
from meta_deployer.spec import FARGATE_SIZES, dump_spec, load_spec, parse_spec

BASE = {"name": "team-a", "git_url": "https://example.com/org/team-a.git"}


def problems(data, source="repos/team-a/config.yml"):
    with pytest.raises(SpecError) as info:
        parse_spec(data, source)
    assert source in str(info.value)
    return dict(info.value.problems)


def test_minimal_spec_gets_defaults():
    spec = parse_spec(BASE, "x")
    assert spec.branch == "main"
    assert (spec.resources.cpu, spec.resources.memory) == (256, 512)
    assert spec.prefix == "repos/team-a"
    assert spec.code_source is None


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("Team", "DNS label"),
        ("team_a", "DNS label"),
        ("-team", "DNS label"),
        ("team-", "DNS label"),
        ("1team", "DNS label"),
        ("a" * 41, "at most 40"),
        ("shared", "reserved"),
        ("system", "reserved"),
        ("temp", "reserved"),
        ("", "non-empty"),
    ],
)
def test_bad_names_are_rejected_with_the_rule(name, fragment):
    assert fragment in problems({**BASE, "name": name})["name"]


def test_unknown_key_suggests_the_closest_valid_one():
    found = problems({**BASE, "brnch": "dev"})
    assert "did you mean 'branch'" in found["brnch"]
    nested = problems({**BASE, "resources": {"cpu": 256, "memroy": 512}})
    assert "did you mean 'memory'" in nested["resources.memroy"]


@pytest.mark.parametrize("cpu, memory", [(256, 4096), (512, 512), (1024, 1024), (3000, 4096)])
def test_invalid_fargate_pairs(cpu, memory):
    message = problems({**BASE, "resources": {"cpu": cpu, "memory": memory}})["resources"]
    assert "cpu" in message or "memory" in message


@pytest.mark.parametrize("cpu", sorted(FARGATE_SIZES))
def test_every_valid_fargate_pair_is_accepted(cpu):
    for memory in FARGATE_SIZES[cpu]:
        parse_spec({**BASE, "resources": {"cpu": cpu, "memory": memory}}, "x")


@pytest.mark.parametrize("path", ["../outside.py", "/etc/passwd.py", "a/../../b.py", "-x.py"])
def test_paths_must_stay_inside_the_repository(path):
    assert "python_file" in problems({**BASE, "python_file": path})


def test_working_directory_may_not_escape():
    assert "working_directory" in problems({**BASE, "working_directory": "src/../../x"})


@pytest.mark.parametrize("branch", ["-x", "--upload-pack=evil", "a..b", "a b", "x.lock", "a~1", "refs/@{0}", "/a", ".hidden"])
def test_refs_that_git_could_misread_are_rejected(branch):
    assert "branch" in problems({**BASE, "branch": branch})


@pytest.mark.parametrize(
    "url",
    ["-uhttps://x", "ext::sh -c touch% /tmp/pwned", "fd::17", "https://user:tok@github.com/x.git", "ftp://x/y", "relative/path", "https://"],
)
def test_urls_that_could_be_options_or_helpers_are_rejected(url):
    assert "git_url" in problems({**BASE, "git_url": url})


@pytest.mark.parametrize("url", ["https://github.com/o/r.git", "ssh://git@host/o/r.git", "git@github.com:o/r.git", "file:///tmp/r", "/srv/r", "./r", "."])
def test_accepted_urls(url):
    assert parse_spec({**BASE, "git_url": url}, "x").git_url == url


def test_only_one_code_source():
    assert "only one" in problems({**BASE, "python_file": "d.py", "module_name": "m"})[""]


def test_s3_prefix_must_be_the_repos_own():
    assert parse_spec({**BASE, "s3_prefix": "repos/team-a/"}, "x").prefix == "repos/team-a"
    assert "repos/team-a" in problems({**BASE, "s3_prefix": "repos/team-b"})[""]


def test_secrets_need_arns_and_env_never_holds_secrets():
    found = problems({**BASE, "secrets": [{"name": "DB", "valueFrom": "hunter2"}], "environment": [{"name": "DB_PASSWORD", "value": "x"}]})
    assert "ARN" in found["secrets.0.valueFrom"]
    assert "secrets" in found["environment.0.name"]
    ok = parse_spec({**BASE, "secrets": [{"name": "DB", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:dagster/team-a/db"}]}, "x")
    assert ok.secrets[0].value_from.startswith("arn:aws:secretsmanager")


def test_environment_values_become_strings_and_reserved_names_are_refused():
    spec = parse_spec({**BASE, "environment": [{"name": "N", "value": 3}, {"name": "B", "value": True}]}, "x")
    assert [(e.name, e.value) for e in spec.environment] == [("N", "3"), ("B", "true")]
    assert "reserved" in problems({**BASE, "environment": [{"name": "DAGSTER_HOME", "value": "/x"}]})["environment.0.name"]


def test_name_must_match_its_folder(tmp_path: Path):
    path = tmp_path / "repos" / "team-b" / "config.yml"
    path.parent.mkdir(parents=True)
    path.write_text("name: team-a\ngit_url: https://example.com/x.git\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value) and "folder" in str(info.value)


def test_yaml_errors_name_the_file(tmp_path: Path):
    path = tmp_path / "team-a" / "config.yml"
    path.parent.mkdir()
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)


def test_dump_and_load_round_trip(tmp_path: Path):
    spec = parse_spec(
        {**BASE, "python_file": "defs.py", "environment": [{"name": "A", "value": "1"}], "access": {"read": ["team-b"]}}, "x"
    )
    path = tmp_path / "team-a" / "config.yml"
    path.parent.mkdir()
    path.write_text(dump_spec(spec))
    assert load_spec(path) == spec
    assert load_spec(path).content_hash() == spec.content_hash()


def test_spec_is_frozen():
    spec = parse_spec(BASE, "x")
    with pytest.raises(Exception):
        spec.name = "other"  # type: ignore[misc]


def test_environment_and_secrets_may_be_mappings():
    spec = parse_spec(
        {**BASE, "environment": {"A": 1}, "secrets": {"DB": "arn:aws:ssm:us-east-1:123456789012:parameter/dagster/team-a/db"}}, "x"
    )
    assert [(e.name, e.value) for e in spec.environment] == [("A", "1")]
    assert spec.secrets[0].value_from.endswith("parameter/dagster/team-a/db")
