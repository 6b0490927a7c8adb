"""Unit tests of the IO manager's key mapping (pure: no Dagster run, no storage)."""

from __future__ import annotations

import pytest

from meta_deployer_runtime.errors import SettingsError, StorageIsolationError
from meta_deployer_runtime.io import (
    RepoIOManager,
    RepoKeys,
    inject_io_manager,
    read_access_from_env,
    repo_io_manager,
)

KEYS = RepoKeys("alpha", frozenset({"beta"}))

HOSTILE_KEY_PARTS = [
    [".."],
    ["..", "beta", "assets", "x"],
    ["a", "..", "..", "beta"],
    ["."],
    [""],
    ["a", ""],
    ["a/b"],
    ["/etc"],
    ["a\\..\\b"],
    ["a\x00b"],
    ["a\nb"],
    [],
]

HOSTILE_PARTITIONS = [
    "",
    "..",
    "../beta",
    "2024/../../beta",
    "/abs",
    "//x",
    "a//b",
    "a/",
    ".",
    "a/./b",
    "a\\b",
    "a\x00",
    "x" * 1100,
]


def test_asset_keys_lie_under_own_assets() -> None:
    assert KEYS.asset_key(["orders"], write=True) == "repos/alpha/assets/orders"
    assert KEYS.asset_key(["sales", "eu", "orders"], write=True) == "repos/alpha/assets/sales/eu/orders"
    # Dots inside a part are harmless literals.
    assert KEYS.asset_key(["my..backup", ".hidden"], write=True) == "repos/alpha/assets/my..backup/.hidden"


def test_partitions_nest_under_the_asset() -> None:
    base = KEYS.asset_key(["daily"], write=True)
    assert KEYS.partition_key(base, "2024-01-01") == "repos/alpha/assets/daily/2024-01-01"
    assert KEYS.partition_key(base, "eu/2024-01-01") == "repos/alpha/assets/daily/eu/2024-01-01"
    assert KEYS.partition_key(base, "2024-01-01-00:00") == "repos/alpha/assets/daily/2024-01-01-00:00"


def test_op_outputs_lie_under_own_runs() -> None:
    assert KEYS.op_output_key(["run-1", "op_a", "result"]) == "repos/alpha/runs/run-1/op_a/result"
    assert KEYS.op_output_key(["run-1", "fan[k1]", "out", "k1"]) == "repos/alpha/runs/run-1/fan--k1/out/k1"


@pytest.mark.parametrize("parts", HOSTILE_KEY_PARTS, ids=repr)
@pytest.mark.parametrize("write", [True, False])
def test_hostile_asset_keys_are_refused(parts: list[str], write: bool) -> None:
    with pytest.raises(StorageIsolationError):
        KEYS.asset_key(parts, write=write)


@pytest.mark.parametrize("partition", HOSTILE_PARTITIONS, ids=lambda p: repr(p)[:30])
def test_hostile_partition_keys_are_refused(partition: str) -> None:
    base = KEYS.asset_key(["daily"], write=True)
    with pytest.raises(StorageIsolationError):
        KEYS.partition_key(base, partition)


@pytest.mark.parametrize(
    "identifier",
    [["..", "op", "result"], ["run", "../..", "result"], ["run", "op", ""], ["run", "op", "a/b"], ["/", "op", "r"]],
    ids=repr,
)
def test_hostile_op_output_identifiers_are_refused(identifier: list[str]) -> None:
    with pytest.raises(StorageIsolationError):
        KEYS.op_output_key(identifier)


def test_writes_go_only_to_own_prefix() -> None:
    for owner in ("beta", "shared", "gamma"):
        with pytest.raises(StorageIsolationError, match="may write only under repos/alpha/"):
            KEYS.asset_key(["x"], owner, write=True)


def test_reads_need_a_grant_except_shared() -> None:
    assert KEYS.asset_key(["x"], "beta", write=False) == "repos/beta/assets/x"
    assert KEYS.asset_key(["x"], "shared", write=False) == "repos/shared/assets/x"
    with pytest.raises(StorageIsolationError, match="access: {read: \\[gamma\\]}"):
        KEYS.asset_key(["x"], "gamma", write=False)
    for bad_owner in ("../beta", "Beta", "", "beta/x"):
        with pytest.raises(StorageIsolationError):
            KEYS.asset_key(["x"], bad_owner, write=False)


def test_partition_of_a_granted_repo_stays_in_its_assets() -> None:
    base = KEYS.asset_key(["daily"], "beta", write=False)
    assert KEYS.partition_key(base, "p1") == "repos/beta/assets/daily/p1"
    with pytest.raises(StorageIsolationError):
        KEYS.partition_key("repos/gamma/assets/daily", "p1")


def test_prefix_confusion_is_not_possible() -> None:
    """``repos/alpha`` must never match ``repos/alpha-evil``: keys end the prefix with '/'."""
    evil = RepoKeys("alpha-evil")
    assert evil.asset_key(["x"], write=True).startswith("repos/alpha-evil/")
    with pytest.raises(StorageIsolationError):
        KEYS.partition_key("repos/alpha-evil/assets/x", "p")


@pytest.mark.parametrize("name", ["", "Alpha", "a_b", "shared", "system", "-a", "a" * 41, "../x"])
def test_repo_name_uses_the_spec_rule(name: str) -> None:
    with pytest.raises(StorageIsolationError, match="repo name"):
        RepoKeys(name)


def test_bad_read_grant_is_refused() -> None:
    with pytest.raises(StorageIsolationError, match="read access"):
        RepoKeys("alpha", frozenset({"../beta"}))


def test_factory_checks_prefix_against_name() -> None:
    ok = RepoIOManager(repo_name="alpha", storage_dir="/tmp/x", base_prefix="repos/alpha/")
    assert ok.key_mapping().prefix == "repos/alpha"
    with pytest.raises(StorageIsolationError, match="base_prefix"):
        RepoIOManager(repo_name="alpha", storage_dir="/tmp/x", base_prefix="repos/beta").key_mapping()


def test_repo_io_manager_reads_the_injected_env(tmp_path) -> None:
    env = {
        "META_DEPLOYER_REPO": "alpha",
        "META_DEPLOYER_PREFIX": "repos/alpha",
        "META_DEPLOYER_STORAGE_DIR": str(tmp_path),
        "META_DEPLOYER_READ_ACCESS": " beta, shared ,,beta",
    }
    manager = repo_io_manager(env)
    assert (manager.repo_name, manager.bucket, manager.storage_dir) == ("alpha", None, str(tmp_path))
    assert manager.read_access == ["beta", "shared"]
    assert repo_io_manager({**env, "META_DEPLOYER_BUCKET": "b"}).bucket == "b"
    assert read_access_from_env(None) == []


@pytest.mark.parametrize(
    "env, match",
    [
        ({}, "META_DEPLOYER_REPO is not set"),
        ({"META_DEPLOYER_REPO": "alpha"}, "META_DEPLOYER_BUCKET"),
        ({"META_DEPLOYER_REPO": "Alpha!", "META_DEPLOYER_STORAGE_DIR": "/x"}, "repo name"),
        ({"META_DEPLOYER_REPO": "alpha", "META_DEPLOYER_STORAGE_DIR": "/x", "META_DEPLOYER_PREFIX": "repos/b"}, "base_prefix"),
    ],
)
def test_repo_io_manager_env_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises((SettingsError, StorageIsolationError), match=match):
        repo_io_manager(env)


def test_inject_adds_the_enforcing_io_manager_only_when_none_is_set(tmp_path) -> None:
    from dagster import Definitions, FilesystemIOManager, asset

    @asset
    def a() -> int:
        return 1

    env = {"META_DEPLOYER_REPO": "alpha", "META_DEPLOYER_STORAGE_DIR": str(tmp_path)}
    injected = inject_io_manager(Definitions(assets=[a]), env)
    assert isinstance(injected.resources["io_manager"], RepoIOManager)
    own = FilesystemIOManager(base_dir=str(tmp_path))
    kept = inject_io_manager(Definitions(assets=[a], resources={"io_manager": own}), env)
    assert kept.resources["io_manager"] is own
    # A repo with its own IO manager needs no injected settings at all.
    assert inject_io_manager(Definitions(assets=[a], resources={"io_manager": own}), {}).resources["io_manager"] is own


def test_inject_into_every_kind_of_loadable_target(tmp_path) -> None:
    import dagster as dg

    @dg.asset
    def a() -> int:
        return 1

    env = {"META_DEPLOYER_REPO": "alpha", "META_DEPLOYER_STORAGE_DIR": str(tmp_path)}
    from meta_deployer_runtime.io import inject_into_target

    assert isinstance(inject_into_target(dg.Definitions(assets=[a]), env).resources["io_manager"], RepoIOManager)

    @dg.definitions
    def lazy() -> dg.Definitions:
        return dg.Definitions(assets=[a])

    loaded = inject_into_target(lazy, env)()
    assert isinstance(loaded.resources["io_manager"], RepoIOManager)

    from_assets = inject_into_target([a], env)
    assert isinstance(from_assets, dg.Definitions) and isinstance(from_assets.resources["io_manager"], RepoIOManager)

    @dg.job
    def j() -> None:
        pass

    assert inject_into_target(j, env) is j
