"""The deployer's credentials never reach a repo's code or its error messages (dev platform)."""

from __future__ import annotations

import pytest

from meta_deployer.errors import BuildError, ValidationFailed
from meta_deployer.pipeline import Deployer
from meta_deployer.spec import parse_spec

TOKEN = "ghp_fakeTokenForTests0123456789"

SHOWS_ENV = '''\
import os

raise RuntimeError("environment seen by the repo: " + " ".join(sorted(k for k in os.environ if k.startswith("META_DEPLOYER"))))
'''


@pytest.fixture
def token_file(tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    monkeypatch.setenv("META_DEPLOYER_GIT_TOKEN_FILE", str(path))
    monkeypatch.setenv("META_DEPLOYER_GIT_TOKEN_HOSTS", "github.com")
    return path


def test_a_repo_s_code_never_sees_the_deployer_s_git_settings(project, git_remote, token_file):
    remote = git_remote(files={"definitions.py": SHOWS_ENV})
    with pytest.raises(ValidationFailed) as err:
        Deployer().deploy(parse_spec({"name": "snoop", "git_url": remote.url, "python_file": "definitions.py"}, "t"))
    message = str(err.value)
    assert "environment seen by the repo:" in message  # the probe ran
    assert "META_DEPLOYER_REPO" in message  # what the location should see, it sees
    assert "META_DEPLOYER_GIT_TOKEN_FILE" not in message and "META_DEPLOYER_GIT_TOKEN_HOSTS" not in message
    assert TOKEN not in message


def test_a_requirements_file_that_includes_the_token_file_never_shows_the_token(project, git_remote, token_file):
    remote = git_remote(files={"definitions.py": "import dagster\n", "requirements.txt": f"-r {token_file}\n"})
    with pytest.raises(BuildError) as err:
        Deployer().deploy(parse_spec({"name": "snoop", "git_url": remote.url, "python_file": "definitions.py"}, "t"))
    assert TOKEN not in str(err.value)


def test_a_repo_cannot_deploy_another_repo_s_checkout_as_its_own_code(project, git_remote):
    from devkit import definitions_py
    from meta_deployer import workspace as ws
    from meta_deployer.errors import CloneError

    remote = git_remote(files={"definitions.py": definitions_py("private")})
    Deployer().deploy(parse_spec({"name": "victim", "git_url": remote.url}, "t"))
    before = project.workspace_bytes()
    checkout = project.work / "checkouts" / "victim"
    for url in (str(checkout), f"file://{checkout}", "./.meta_deployer/checkouts/victim", str(project.work / "storage")):
        with pytest.raises(CloneError, match="the deployer's own files"):
            Deployer().deploy(parse_spec({"name": "thief", "git_url": url, "python_file": "definitions.py"}, "t"))
    assert project.workspace_bytes() == before and "thief" not in ws.read_entries(project.workspace)
