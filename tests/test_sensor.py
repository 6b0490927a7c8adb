"""repos_sensor with build_sensor_context: new, changed, deleted and invalid files."""

from pathlib import Path

import json
import pytest
from dagster import DagsterInstance, build_sensor_context, validate_run_config

from meta_deployer import definitions as d

GOOD = "name: {name}\ngit_url: https://example.com/{name}.git\npython_file: defs.py\n"


@pytest.fixture
def repos(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "repos"
    path.mkdir()
    monkeypatch.setenv("META_DEPLOYER_ROOT", str(tmp_path))
    monkeypatch.setenv("META_DEPLOYER_REPOS_DIR", str(path))
    return path


def write(repos: Path, name: str, text: str | None = None) -> None:
    (repos / name).mkdir(exist_ok=True)
    (repos / name / "config.yml").write_text(text if text is not None else GOOD.format(name=name))


def deployed(repos: Path, name: str, spec_hash: str = "other", parent: str | None = None) -> None:
    """Record ``name`` as deployed (what a successful add_repo run leaves behind)."""
    import time

    from meta_deployer.state import Deployment, StateStore

    StateStore(repos.parent / ".meta_deployer" / "state").put(
        Deployment(name=name, git_url="x", branch="main", commit="c" * 40, platform="dev", artifact="x",
                   endpoint="x", workspace_entry={}, fingerprint="f", spec_hash=spec_hash,
                   deployed_at=time.time(), duration_s=1.0, parent=parent)
    )


def tick(cursor=None):
    with DagsterInstance.ephemeral() as instance:
        result = d.repos_sensor(build_sensor_context(instance=instance, cursor=cursor))
    return result


def jobs(result):
    return sorted((r.job_name, r.tags["meta_deployer/repo"]) for r in result.run_requests)


def test_new_changed_deleted(repos):
    write(repos, "alpha")
    write(repos, "beta")
    first = tick()
    assert jobs(first) == [("add_repo", "alpha"), ("add_repo", "beta")]
    for request in first.run_requests:
        assert validate_run_config(d.add_repo, request.run_config)
    assert tick(first.cursor).run_requests == []  # nothing changed: nothing launched

    deployed(repos, "beta")
    write(repos, "alpha", GOOD.format(name="alpha") + "branch: release\n")
    (repos / "beta" / "config.yml").unlink()
    second = tick(first.cursor)
    assert jobs(second) == [("remove_repo", "beta"), ("update_repo", "alpha")]
    remove = next(r for r in second.run_requests if r.job_name == "remove_repo")
    assert validate_run_config(d.remove_repo, remove.run_config)
    assert tick(second.cursor).run_requests == []


def test_run_keys_are_content_keyed_so_a_change_is_never_launched_twice(repos):
    write(repos, "alpha")
    a, b = tick(), tick()  # the same content, e.g. after a lost cursor
    assert [r.run_key for r in a.run_requests] == [r.run_key for r in b.run_requests]
    write(repos, "alpha", GOOD.format(name="alpha") + "branch: dev\n")
    c = tick(a.cursor)
    assert c.run_requests[0].run_key != a.run_requests[0].run_key
    write(repos, "alpha")  # back to the first content: a new deploy is still due
    assert tick(c.cursor).run_requests[0].job_name == "update_repo"


def test_invalid_file_is_reported_and_skipped_while_others_deploy(repos):
    write(repos, "alpha")
    write(repos, "broken", "name: broken\ngit_url: https://example.com/b.git\nbrnch: main\n")
    write(repos, "Bad_Name")
    result = tick()
    assert jobs(result) == [("add_repo", "alpha")]
    assert "broken" not in result.cursor and "Bad_Name" not in result.cursor


def test_a_deployed_repo_whose_file_turns_invalid_keeps_serving(repos):
    write(repos, "alpha")
    first = tick()
    write(repos, "alpha", "name: alpha\ngit_url: -oops\n")
    second = tick(first.cursor)
    assert second.run_requests == []  # no removal, no update
    assert "git_url" in second.skip_reason.skip_message
    assert '"alpha"' in second.cursor
    write(repos, "alpha", GOOD.format(name="alpha") + "branch: fixed\n")
    assert jobs(tick(second.cursor)) == [("update_repo", "alpha")]


def test_definitions_load_and_default_configs_validate():
    assert {j.name for j in d.defs.resolve_all_job_defs()} >= {"add_repo", "update_repo", "remove_repo", "sync_repos"}
    assert validate_run_config(d.add_repo)  # the launchpad default: the example location
    assert validate_run_config(d.remove_repo, {"ops": {"remove": {"config": {"name": "hello"}}}})


def test_validate_command_reports_bad_files(repos, capsys):
    from meta_deployer.cli import main

    write(repos, "alpha")
    assert main(["validate"]) == 0
    write(repos, "broken", "name: broken\ngit_url: https://example.com/b.git\nbrnch: main\n")
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "broken/config.yml" in err and "did you mean 'branch'" in err


def test_no_run_for_what_is_already_deployed_or_removed(repos, monkeypatch):
    from meta_deployer.spec import load_spec

    write(repos, "alpha")
    deployed(repos, "alpha", load_spec(repos / "alpha" / "config.yml").content_hash())
    monkeypatch.setenv("META_DEPLOYER_PLATFORM", "dev")
    first = tick()  # make add-repo deployed it already: nothing to launch, but the cursor learns it
    assert first.run_requests == [] and '"alpha"' in first.cursor
    write(repos, "alpha", GOOD.format(name="alpha") + "branch: dev\n")
    assert jobs(tick(first.cursor)) == [("update_repo", "alpha")]
    write(repos, "beta")
    second = tick()
    (repos / "beta" / "config.yml").unlink()
    assert [r for r in tick(second.cursor).run_requests if r.job_name == "remove_repo"] == []  # never deployed


def test_a_reverted_revert_gets_a_run_key_of_its_own(repos):
    """A -> B -> A -> B: Dagster launches one run per run key ever, so the second B needs a new key."""
    a = GOOD.format(name="alpha")
    b = a + "branch: dev\n"
    keys, cursor = [], None
    for content in (a, b, a, b):
        write(repos, "alpha", content)
        result = tick(cursor)
        (request,) = result.run_requests
        keys.append(request.run_key)
        cursor = result.cursor
    assert len(set(keys)) == 4
    assert tick(cursor).run_requests == []  # and nothing more while the file stays as it is


def test_the_first_cursor_format_is_still_read(repos):
    write(repos, "alpha")
    first = tick()
    old_format = json.dumps(json.loads(first.cursor)["files"])  # {name: hash}, as before the sequence
    assert tick(old_format).run_requests == []


def _deployed_reading(repos: Path, name: str, reads: list[str]) -> None:
    """Record ``name`` as deployed with the grants it serves with (what a deploy keeps in the record)."""
    import time

    from meta_deployer.scan import scan_repo_configs
    from meta_deployer.state import Deployment, StateStore

    spec = scan_repo_configs(repos)[name].spec
    StateStore(repos.parent / ".meta_deployer" / "state").put(
        Deployment(name=name, git_url="x", branch="main", commit="c" * 40, platform="dev", artifact="x",
                   endpoint="x", workspace_entry={}, fingerprint="f", spec_hash=spec.content_hash(),
                   deployed_at=time.time(), duration_s=1.0, metadata={"reads": reads})
    )


def test_an_owner_that_stops_sharing_redeploys_its_readers_within_a_tick(repos):
    """Revoking access.share_with takes the grant away now, not at the reader's next deploy; a reader
    that never got the grant, and a repo that reads nothing, are left alone."""
    write(repos, "sales", GOOD.format(name="sales") + "access:\n  share_with: [marketing, finance]\n")
    write(repos, "marketing", GOOD.format(name="marketing") + "access:\n  read: [sales]\n")
    write(repos, "finance", GOOD.format(name="finance") + "access:\n  read: [sales]\n")
    write(repos, "ops", GOOD.format(name="ops") + "access:\n  read: [sales]\n")  # asks, never granted
    write(repos, "plain")
    first = tick()
    deployed(repos, "sales", spec_hash="x")
    _deployed_reading(repos, "marketing", ["sales"])
    _deployed_reading(repos, "finance", ["sales"])
    _deployed_reading(repos, "ops", [])
    _deployed_reading(repos, "plain", [])
    # sales stops sharing with marketing (finance keeps its grant, ops still has none).
    write(repos, "sales", GOOD.format(name="sales") + "access:\n  share_with: [finance]\n")
    revoked = tick(first.cursor)
    assert jobs(revoked) == [("update_repo", "marketing"), ("update_repo", "sales")]
    for request in revoked.run_requests:
        assert validate_run_config(d.update_repo, request.run_config)
    assert tick(revoked.cursor).run_requests == []  # a steady tick launches nothing again
    # sales removed altogether: every reader still served with its grant is redeployed.
    (repos / "sales" / "config.yml").unlink()
    (repos / "sales").rmdir()
    removed = tick(revoked.cursor)
    assert jobs(removed) == [("remove_repo", "sales"), ("update_repo", "finance"), ("update_repo", "marketing")]


def test_an_owner_that_starts_sharing_redeploys_the_reader_that_asked(repos):
    write(repos, "sales")
    write(repos, "ops", GOOD.format(name="ops") + "access:\n  read: [sales]\n")
    first = tick()
    deployed(repos, "sales", spec_hash="x")
    _deployed_reading(repos, "ops", [])
    write(repos, "sales", GOOD.format(name="sales") + "access:\n  share_with: [ops]\n")
    assert jobs(tick(first.cursor)) == [("update_repo", "ops"), ("update_repo", "sales")]


MULTI = GOOD.replace("python_file: defs.py\n", "locations:\n  - name: eu\n    package_name: eu\n  - name: us\n    python_file: us.py\n")


def test_a_repository_with_several_locations_is_one_config(repos, monkeypatch):
    from meta_deployer.spec import load_spec

    monkeypatch.setenv("META_DEPLOYER_PLATFORM", "dev")
    write(repos, "sales", MULTI.format(name="sales"))
    first = tick()
    assert jobs(first) == [("add_repo", "sales")]  # one run deploys both locations
    assert validate_run_config(d.add_repo, first.run_requests[0].run_config)
    assert [loc["name"] for loc in first.run_requests[0].run_config["ops"]["clone"]["config"]["locations"]] == ["eu", "us"]
    content = load_spec(repos / "sales" / "config.yml").content_hash()
    deployed(repos, "sales-eu", content, parent="sales")
    assert jobs(tick()) == [("add_repo", "sales")]  # one location missing: still to deploy
    deployed(repos, "sales-us", content, parent="sales")
    known = tick()
    assert known.run_requests == []  # every location serves this config
    (repos / "sales" / "config.yml").unlink()
    assert jobs(tick(known.cursor)) == [("remove_repo", "sales")]  # the repository, with all its locations
