"""Config from git (GitOps): the repos_sensor against a real configuration repository (file:// remote)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_sensor_context, validate_run_config

from gitrepo import GitRemote, git
from meta_deployer import definitions as d
from meta_deployer import scan as scan_module
from meta_deployer.settings import Settings

GOOD = "name: {name}\ngit_url: https://example.com/{name}.git\npython_file: defs.py\n"


def cfg(name: str, extra: str = "") -> dict[str, str]:
    return {f"repos/{name}/config.yml": GOOD.format(name=name) + extra}


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """A project whose local repos/ folder is empty: every config comes from git."""
    (tmp_path / "repos").mkdir()
    monkeypatch.setenv("META_DEPLOYER_ROOT", str(tmp_path))
    monkeypatch.setenv("META_DEPLOYER_REPOS_DIR", str(tmp_path / "repos"))
    monkeypatch.delenv("META_DEPLOYER_WORK_DIR", raising=False)
    return tmp_path


@pytest.fixture
def config_repo(env, git_remote, monkeypatch) -> GitRemote:
    remote = git_remote("config", files={"repos/.gitkeep": ""})
    monkeypatch.setenv("META_DEPLOYER_CONFIG_GIT_URL", remote.url)
    return remote


def deployed(root: Path, name: str) -> None:
    import time

    from meta_deployer.state import Deployment, StateStore

    StateStore(root / ".meta_deployer" / "state").put(
        Deployment(name=name, git_url="x", branch="main", commit="c" * 40, platform="dev", artifact="x",
                   endpoint="x", workspace_entry={}, fingerprint="f", spec_hash="other",
                   deployed_at=time.time(), duration_s=1.0)
    )


def tick(cursor=None):
    with DagsterInstance.ephemeral() as instance:
        return d.repos_sensor(build_sensor_context(instance=instance, cursor=cursor))


def jobs(result):
    return sorted((r.job_name, r.tags["meta_deployer/repo"]) for r in result.run_requests)


def skip(result) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def test_settings_default_branch_and_checkout(env, monkeypatch):
    s = Settings.from_env()
    assert (s.config_git_url, s.config_git_branch) == (None, "main")
    assert s.config_repo_dir == env.resolve() / ".meta_deployer" / "config-repo"
    from meta_deployer.errors import SettingsError

    with pytest.raises(SettingsError, match="META_DEPLOYER_CONFIG_GIT_URL"):
        Settings.from_env({"META_DEPLOYER_CONFIG_GIT_URL": "-uhttps://x"})
    with pytest.raises(SettingsError, match="META_DEPLOYER_CONFIG_GIT_BRANCH"):
        Settings.from_env({"META_DEPLOYER_CONFIG_GIT_BRANCH": "a..b"})


def test_add_change_delete_through_commits(env, config_repo):
    head = config_repo.commit(cfg("alpha"), "add alpha")
    first = tick()
    assert jobs(first) == [("add_repo", "alpha")]
    assert validate_run_config(d.add_repo, first.run_requests[0].run_config)
    assert json.loads(first.cursor)["commit"] == head
    assert not (env / "repos" / "alpha").exists()  # nothing written into the local folder

    config_repo.commit(cfg("alpha", "branch: release\n"), "change alpha")
    second = tick(first.cursor)
    assert jobs(second) == [("update_repo", "alpha")]
    assert second.run_requests[0].run_config["ops"]["clone"]["config"]["branch"] == "release"

    deployed(env, "alpha")
    head = config_repo.commit({"repos/alpha/config.yml": None}, "delete alpha")
    third = tick(second.cursor)
    assert jobs(third) == [("remove_repo", "alpha")]
    assert validate_run_config(d.remove_repo, third.run_requests[0].run_config)
    assert json.loads(third.cursor)["commit"] == head


def test_a_deleted_config_of_a_repo_never_deployed_launches_nothing(env, config_repo):
    config_repo.commit(cfg("alpha"), "add")
    first = tick()
    config_repo.commit({"repos/alpha/config.yml": None}, "delete")
    assert tick(first.cursor).run_requests == []


def test_a_steady_tick_reads_no_file(env, config_repo, monkeypatch):
    config_repo.commit(cfg("alpha"), "add")
    first = tick()
    calls = []
    monkeypatch.setattr(scan_module, "read_config_bytes", lambda p: calls.append(p) or b"")
    steady = tick(first.cursor)
    assert steady.run_requests == [] and calls == []
    assert "unchanged" in skip(steady) and json.loads(steady.cursor) == json.loads(first.cursor)


def test_an_unrelated_commit_rescans_but_reparses_nothing(env, config_repo, monkeypatch):
    config_repo.commit(cfg("alpha"), "add")
    first = tick()
    config_repo.commit({"README.md": "docs\n"}, "unrelated")
    parsed = []
    real = scan_module.spec_from_bytes
    monkeypatch.setattr(scan_module, "spec_from_bytes", lambda *a, **k: parsed.append(a) or real(*a, **k))
    second = tick(first.cursor)
    assert second.run_requests == [] and parsed == []
    assert json.loads(second.cursor)["commit"] == config_repo.head()


def test_an_unreachable_config_remote_changes_nothing(env, config_repo, monkeypatch, tmp_path):
    config_repo.commit(cfg("alpha"), "add")
    first = tick()
    deployed(env, "alpha")
    monkeypatch.setenv("META_DEPLOYER_CONFIG_GIT_URL", f"file://{tmp_path}/gone.git")
    down = tick(first.cursor)
    assert down.run_requests == []  # never "every config was deleted"
    assert "configs not read, nothing changed" in skip(down) and "gone.git" in skip(down)
    assert down.cursor == first.cursor


def test_a_missing_branch_or_repos_folder_changes_nothing(env, config_repo, monkeypatch):
    config_repo.commit(cfg("alpha"), "add")
    first = tick()
    deployed(env, "alpha")
    monkeypatch.setenv("META_DEPLOYER_CONFIG_GIT_BRANCH", "nope")
    assert tick(first.cursor).run_requests == []
    monkeypatch.delenv("META_DEPLOYER_CONFIG_GIT_BRANCH")
    git(config_repo.path, "rm", "-rq", "repos")
    config_repo.commit({}, "delete the folder itself")
    gone = tick(first.cursor)
    assert gone.run_requests == [] and "no repos/ folder" in skip(gone) and gone.cursor == first.cursor


def test_hostile_files_are_reported_and_the_others_deploy(env, config_repo):
    os.symlink("/etc/passwd", config_repo.path / "repos" / "passwd")  # not a folder: not a config
    (config_repo.path / "repos" / "leak").mkdir()
    os.symlink("/etc/passwd", config_repo.path / "repos" / "leak" / "config.yml")
    os.symlink("/etc", config_repo.path / "repos" / "etcdir")
    (config_repo.path / "repos" / "huge").mkdir()
    (config_repo.path / "repos" / "huge" / "config.yml").write_text("name: huge\n" + "#" * (1 << 20))
    config_repo.commit({**cfg("good"), "repos/bad/config.yml": "name: bad\ngit_url: [\n"}, "hostile")
    result = tick()
    assert jobs(result) == [("add_repo", "good")]
    message = skip(result) or ""
    logged = json.loads(result.cursor)
    assert set(logged["files"]) == {"good"}
    from meta_deployer import configsource

    _, scanned = configsource.scan(Settings.from_env())
    assert "leaves the configuration repository" in scanned["leak"].error
    assert "at most 65536 bytes" in scanned["huge"].error
    assert "not valid YAML" in scanned["bad"].error
    assert "etcdir" not in scanned or "leaves the configuration repository" in scanned["etcdir"].error
    assert message == ""  # requests were made: the problems are logged as warnings instead


def test_the_local_folder_stays_the_default(env, git_remote):
    (env / "repos" / "alpha").mkdir()
    (env / "repos" / "alpha" / "config.yml").write_text(GOOD.format(name="alpha"))
    result = tick()
    assert jobs(result) == [("add_repo", "alpha")]
    assert "commit" not in json.loads(result.cursor)


# -- the deployer and the CLI read the configured source, and write nothing into it --------------


def test_validate_and_run_config_read_the_configuration_repository(env, config_repo, capsys):
    from meta_deployer import cli

    config_repo.commit({**cfg("alpha", "branch: dev\n"), "repos/bad/config.yml": "name: bad\n"}, "add")
    assert cli.main(["validate"]) == 1
    out = capsys.readouterr()
    assert "configs of " in out.out and "ok       " in out.out and "invalid" in out.out and "bad" in out.err
    assert cli.main(["run-config", "update", "--name", "alpha"]) == 0
    assert "branch: dev" in capsys.readouterr().out  # from the configuration repository; repos/ is empty
    assert cli.main(["run-config", "update", "--name", "nope"]) == 2
    assert "config.yml of file://" in capsys.readouterr().err
    config_repo.commit({"repos/bad/config.yml": None}, "fix")
    assert cli.main(["validate"]) == 0


def test_an_unreachable_configuration_repository_fails_validate(env, monkeypatch, tmp_path, capsys):
    from meta_deployer import cli

    monkeypatch.setenv("META_DEPLOYER_CONFIG_GIT_URL", f"file://{tmp_path}/gone.git")
    assert cli.main(["validate"]) == 2
    assert "cannot fetch the configuration repository" in capsys.readouterr().err


def test_deploys_and_removals_write_no_config_into_the_checkout(env, config_repo):
    from meta_deployer.registry import Registry
    from meta_deployer.spec import parse_spec

    config_repo.commit(cfg("alpha"), "add")
    tick()  # the checkout exists
    settings = Settings.from_env()
    checkout = settings.config_repo_dir
    before = (checkout / "repos" / "alpha" / "config.yml").read_text()
    spec = parse_spec({"name": "alpha", "git_url": "https://example.com/a.git", "module_name": "x"}, "t")
    said: list[str] = []
    Registry(settings).write_config(spec, said.append)
    Registry(settings).delete_config("alpha", said.append)
    assert (checkout / "repos" / "alpha" / "config.yml").read_text() == before
    assert not (env / "repos" / "alpha").exists()
    assert len(said) == 2 and all("configuration repository" in line for line in said)
    assert git(checkout, "status", "--porcelain") == ""


def test_a_checkout_held_by_another_process_skips_the_tick_quickly(env, config_repo, monkeypatch):
    """A deploy fetching the configuration repository holds its checkout; the sensor must not wait
    for it past the daemon's evaluation timeout: it skips the tick, changing nothing."""
    import subprocess
    import sys

    from meta_deployer.settings import Settings

    config_repo.commit(cfg("alpha"), "add")
    first = tick()
    assert jobs(first) == [("add_repo", "alpha")]
    config_repo.commit(cfg("beta"), "add beta")
    monkeypatch.setattr(d, "SENSOR_LOCK_TIMEOUT_S", 0.5)
    lock = str(Settings.from_env().config_repo_dir) + ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import filelock,sys,time; l=filelock.FileLock({lock!r}); l.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = tick(first.cursor)
        assert busy.run_requests == [] and busy.cursor == first.cursor
        assert "held by another process" in skip(busy) and "nothing was read" in skip(busy)
    finally:
        holder.kill()
        holder.wait()
    after = tick(first.cursor)
    assert jobs(after) == [("add_repo", "beta")]
