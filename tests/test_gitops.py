"""Git against real repositories on disk."""

import pytest

from meta_deployer import gitops
from meta_deployer.errors import CloneError
from meta_deployer.settings import GitAuth


def test_clone_then_converge_then_noop(git_remote, tmp_path):
    remote = git_remote(files={"a.txt": "1"})
    dest = tmp_path / "checkout"
    commit, changed = gitops.converge(remote.url, "main", dest)
    assert (commit, changed) == (remote.head(), True)
    assert (dest / "a.txt").read_text() == "1"
    assert gitops.converge(remote.url, "main", dest) == (commit, False)
    second = remote.commit({"a.txt": "2", "b.txt": "new"})
    (dest / "stray.txt").write_text("left by someone")
    assert gitops.converge(remote.url, "main", dest) == (second, True)
    assert (dest / "a.txt").read_text() == "2" and not (dest / "stray.txt").exists()


def test_other_branch_and_missing_branch(git_remote, tmp_path):
    remote = git_remote(files={"a.txt": "1"})
    from gitrepo import git

    git(remote.path, "checkout", "-q", "-b", "release")
    release = remote.commit({"a.txt": "release"})
    assert gitops.converge(remote.url, "release", tmp_path / "c")[0] == release
    with pytest.raises(CloneError) as info:
        gitops.converge(remote.url, "nope", tmp_path / "d")
    assert "'nope' does not exist" in str(info.value) and "main" in str(info.value) and "release" in str(info.value)
    assert not (tmp_path / "d").exists()


def test_unreachable_remote_is_a_clear_error(tmp_path):
    with pytest.raises(CloneError, match="cannot read the remote"):
        gitops.converge(f"file://{tmp_path}/missing", "main", tmp_path / "c")


def test_a_checkout_of_another_url_is_replaced(git_remote, tmp_path):
    one, two = git_remote("one", {"x": "1"}), git_remote("two", {"y": "2"})
    dest = tmp_path / "c"
    gitops.converge(one.url, "main", dest)
    assert gitops.converge(two.url, "main", dest) == (two.head(), True)
    assert (dest / "y").exists() and not (dest / "x").exists()


def test_tokens_and_url_credentials_are_redacted():
    text = "fatal: could not read https://user:s3cr3t@github.com/o/r.git with token tok123"
    out = gitops.redact(text, ("tok123",))
    assert "s3cr3t" not in out and "tok123" not in out and "https://***@github.com" in out


def test_token_never_reaches_the_command_line_or_errors(tmp_path):
    token = "ghp_supersecrettoken"
    with pytest.raises(CloneError) as info:
        gitops.converge("https://127.0.0.1:9/none.git", "main", tmp_path / "c", GitAuth(token=token, token_hosts=("127.0.0.1",)))
    assert token not in str(info.value)


def test_converge_at_an_earlier_commit_then_back_to_the_head(git_remote, tmp_path):
    """A rollback's checkout: an earlier commit of the branch (fetched by hash into a shallow clone)."""
    remote = git_remote(files={"defs.py": "v1\n"})
    first = remote.head()
    second = remote.commit({"defs.py": "v2\n"})
    dest = tmp_path / "checkout"
    assert gitops.converge(remote.url, "main", dest) == (second, True)
    assert gitops.converge_at(remote.url, "main", first, dest) == (first, True)
    assert (dest / "defs.py").read_text() == "v1\n"
    assert gitops.converge_at(remote.url, "main", first, dest) == (first, False)  # already there
    assert gitops.converge(remote.url, "main", dest) == (second, True)
    assert (dest / "defs.py").read_text() == "v2\n"
    fresh = tmp_path / "fresh"
    assert gitops.converge_at(remote.url, "main", first, fresh)[0] == first  # no checkout yet
    for bad in ("HEAD~1", first[:12], "--upload-pack=x" + "0" * 25):
        with pytest.raises(CloneError, match="full commit hash"):
            gitops.converge_at(remote.url, "main", bad, dest)
    with pytest.raises(CloneError, match="commit"):
        gitops.converge_at(remote.url, "main", "f" * 40, dest)  # no such commit
