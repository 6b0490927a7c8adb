"""Symbolic links in a repository never lead outside it (issue 9): real git repositories."""

from __future__ import annotations

import os

import pytest

from devkit import definitions_py
from gitrepo import GitRemote
from meta_deployer import gitops, snapshot
from meta_deployer.errors import UnsafeRepositoryError
from meta_deployer.pipeline import Deployer
from meta_deployer.spec import parse_spec

ESCAPES = {
    "defs_link.py": "/etc/passwd",  # absolute
    "sub/up.txt": "../../x",  # '..' out of the repository
    "sub/hop": "../chain",  # a link to a link that escapes
    "chain": "../outside-dir",
    "etc": "/etc",  # a folder
}
INSIDE = {
    "alias.py": "definitions.py",
    "sub/back.py": "../definitions.py",
    "sub/root": "..",  # the repository root itself
    "src_link": "sub",
    "dangling_inside": "not/there",
}


def with_links(remote: GitRemote, links: dict[str, str]) -> GitRemote:
    for rel, target in links.items():
        path = remote.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
    remote.commit({}, "links")
    return remote


def test_links_that_leave_the_checkout_are_found_and_inside_ones_are_fine(git_remote, tmp_path):
    remote = with_links(git_remote(files={"definitions.py": "x = 1\n", "sub/a.txt": "a"}), {**ESCAPES, **INSIDE})
    dest = tmp_path / "checkout"
    gitops.converge(remote.url, "main", dest)
    assert os.path.islink(dest / "defs_link.py")  # git checked them out as links
    assert snapshot.escaping_links(dest) == sorted(ESCAPES.items())
    with pytest.raises(UnsafeRepositoryError) as info:
        snapshot.check_links(dest)
    message = str(info.value)
    assert "'defs_link.py' -> '/etc/passwd'" in message and "'sub/up.txt' -> '../../x'" in message
    assert "inside the repository" in message and "root:" not in message  # no file content
    for link in INSIDE:
        assert repr(link) not in message


def test_inside_links_only_pass(git_remote, tmp_path):
    remote = with_links(git_remote(files={"definitions.py": "x = 1\n", "sub/a.txt": "a"}), INSIDE)
    dest = tmp_path / "checkout"
    gitops.converge(remote.url, "main", dest)
    snapshot.check_links(dest)


def test_a_deploy_of_a_repo_with_escaping_links_fails_and_changes_nothing(project, git_remote):
    serving = with_links(git_remote("serving", {"definitions.py": definitions_py("ok")}), {"alias.py": "definitions.py"})
    Deployer().deploy(parse_spec({"name": "serving", "git_url": serving.url, "python_file": "alias.py"}, "test"))
    before = project.workspace_bytes()
    assert b"serving" in before

    hostile = with_links(
        git_remote("hostile", {"definitions.py": definitions_py("a")}),
        {"defs_link.py": "/etc/passwd", "x": "../../x"},
    )
    with pytest.raises(UnsafeRepositoryError) as info:
        Deployer().deploy(parse_spec({"name": "team-a", "git_url": hostile.url, "python_file": "definitions.py"}, "test"))
    message = str(info.value)
    assert "'defs_link.py' -> '/etc/passwd'" in message and "'x' -> '../../x'" in message
    assert "root:x:0:0" not in message
    assert project.workspace_bytes() == before
    assert Deployer().registry.get("team-a") is None
    assert not (project.repos / "team-a").exists()
