"""Cross-repo reads take both sides (meta_deployer.grants): a hostile tenant cannot grant itself
another tenant's data by listing it in its own config.yml's access.read."""

from __future__ import annotations

from pathlib import Path

import pytest

from meta_deployer.grants import granted
from meta_deployer.settings import Settings
from meta_deployer.spec import SpecError, parse_spec


def settings_for(repos: Path) -> Settings:
    return Settings.from_env({"META_DEPLOYER_ROOT": str(repos.parent), "META_DEPLOYER_REPOS_DIR": str(repos)})


def write(repos: Path, name: str, extra: str = "") -> None:
    (repos / name).mkdir(parents=True, exist_ok=True)
    (repos / name / "config.yml").write_text(f"name: {name}\ngit_url: https://example.com/{name}.git\n{extra}")


def reader(*owners: str):
    return parse_spec({"name": "spy", "git_url": "https://example.com/spy.git", "access": {"read": list(owners)}}, "t")


def test_a_read_the_owner_does_not_share_is_dropped_with_a_warning_naming_both(tmp_path):
    repos = tmp_path / "repos"
    write(repos, "finance")
    write(repos, "marketing", "access:\n  share_with: [spy]\n")
    said: list[str] = []
    spec = granted(reader("finance", "marketing"), settings_for(repos), said.append)
    assert spec.access.read == ("marketing",)
    assert any("no read access to finance" in s and "access.share_with" in s and "spy" in s for s in said), said


def test_missing_or_corrupt_owner_configs_grant_nothing(tmp_path):
    repos = tmp_path / "repos"
    (repos / "broken").mkdir(parents=True)
    (repos / "broken" / "config.yml").write_text("name: broken\nshare_with: [spy\n")
    said: list[str] = []
    spec = granted(reader("ghost", "broken"), settings_for(repos), said.append)
    assert spec.access.read == ()
    assert any("ghost" in s and "does not exist" in s for s in said) and any("broken" in s for s in said), said


def test_sharing_with_someone_else_is_not_sharing_with_you(tmp_path):
    repos = tmp_path / "repos"
    write(repos, "finance", "access:\n  share_with: [spy-team, spyware]\n")  # lookalike names
    assert granted(reader("finance"), settings_for(repos), lambda _: None).access.read == ()


def test_share_with_is_validated_like_a_name_list_and_never_changes_a_spec_that_shares_nothing():
    with pytest.raises(SpecError, match="share_with"):
        parse_spec({"name": "a", "git_url": "https://example.com/a.git", "access": {"share_with": ["a"]}}, "t")
    with pytest.raises(SpecError):
        parse_spec({"name": "a", "git_url": "https://example.com/a.git", "access": {"share_with": ["../b"]}}, "t")
    plain = parse_spec({"name": "a", "git_url": "https://example.com/a.git"}, "t")
    empty = parse_spec({"name": "a", "git_url": "https://example.com/a.git", "access": {"share_with": []}}, "t")
    assert plain.content_hash() == empty.content_hash()  # no redeploy of every repo after the upgrade
    sharing = parse_spec({"name": "a", "git_url": "https://example.com/a.git", "access": {"share_with": ["b"]}}, "t")
    assert sharing.content_hash() != plain.content_hash()


def _spec(name: str, read=(), share_with=()):
    return parse_spec({"name": name, "git_url": f"https://example.com/{name}.git",
                       "access": {"read": list(read), "share_with": list(share_with)}}, "t")


def _record(reads):
    from meta_deployer.state import Deployment

    return Deployment(name="x", git_url="x", branch="main", commit="c" * 40, platform="dev", artifact="x",
                      endpoint="x", workspace_entry={}, fingerprint="f", spec_hash="h", deployed_at=0.0,
                      duration_s=0.0, metadata={} if reads is None else {"reads": reads})


def test_regranted_names_exactly_the_readers_whose_grant_moved_with_the_owner():
    from meta_deployer.grants import consented, regranted

    specs = {
        "sales": _spec("sales", share_with=["finance"]),           # stopped sharing with spy
        "finance": _spec("finance", read=["sales"]),
        "spy": _spec("spy", read=["sales", "hr"]),
        "hr": _spec("hr", share_with=["spy"]),
        "newcomer": _spec("newcomer", read=["sales"]),             # not deployed yet
    }
    records = {"finance": _record(["sales"]), "spy": _record(["sales", "hr"]), "hr": _record([])}
    assert consented(specs["spy"], specs) == ("hr",)
    moved = regranted({"sales"}, specs, records.get)
    assert list(moved) == ["spy"] and "sales stopped sharing" in moved["spy"]
    assert regranted({"hr"}, specs, records.get) == {}  # hr still shares with spy
    # A record written before grants were kept serves what the reader asks for.
    assert regranted({"sales"}, specs, {"spy": _record(None)}.get) == {"spy": moved["spy"]}
    # The owner is gone: every reader it granted loses it; one the owner never granted is left alone.
    gone = {k: v for k, v in specs.items() if k != "sales"}
    assert list(regranted({"sales"}, gone, records.get)) == ["finance", "spy"]
