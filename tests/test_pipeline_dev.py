"""The deploy pipeline on the dev platform: real git, real uv virtualenvs, real validation."""

import pytest
import yaml

from devkit import BROKEN, definitions_py
from meta_deployer import workspace as ws
from meta_deployer.errors import CloneError, DetectionError, SpecError, ValidationFailed
from meta_deployer.pipeline import Deployer
from meta_deployer.platforms.devservers import DevServers, grpc_ready
from meta_deployer.spec import load_spec, parse_spec


def spec_for(remote, name="team-a", **extra):
    return parse_spec({"name": name, "git_url": remote.url, **extra}, "test")


def servers(project, name="team-a"):
    return DevServers(project.work, project.work / "logs").servers(name)


def test_deploy_then_noop_then_code_change(project, git_remote):
    remote = git_remote(files={"definitions.py": definitions_py("one")})
    d = Deployer()
    first = d.deploy(spec_for(remote))
    assert not first.unchanged and first.artifact.built
    entry = ws.read_entries(project.workspace)["team-a"]["grpc_server"]
    assert entry["location_name"] == "team-a" and entry["host"] == "127.0.0.1"
    # its own supervised code server answers there, with the version's server id
    [server] = servers(project)
    assert server.port == entry["port"] and grpc_ready(entry["port"])
    assert server.server_id.endswith((project.work / "locations" / "team-a" / "current").resolve().name)
    # the detected code source was written back to config.yml
    assert load_spec(project.repos / "team-a" / "config.yml").python_file == "definitions.py"

    before = project.workspace_bytes()
    again = Deployer().deploy(load_spec(project.repos / "team-a" / "config.yml"))
    assert again.unchanged and again.artifact is None and not again.workspace_changed
    assert project.workspace_bytes() == before

    first_version = (project.work / "locations" / "team-a" / "current").resolve()
    remote.commit({"definitions.py": definitions_py("one", "two")})
    third = Deployer().deploy(load_spec(project.repos / "team-a" / "config.yml"))
    assert not third.unchanged and not third.artifact.built  # same dependencies: virtualenv reused
    # swapped like docker: a new server on a new port serves, the old one was stopped
    new_entry = ws.read_entries(project.workspace)["team-a"]["grpc_server"]
    assert third.workspace_changed and new_entry["port"] != entry["port"]
    [new_server] = servers(project)
    assert new_server.port == new_entry["port"] and grpc_ready(new_entry["port"])
    assert not grpc_ready(entry["port"])
    assert (project.work / "locations" / "team-a" / "current").resolve() != first_version
    assert first_version.exists()  # the previous version is kept until the next switch (daemon lag)
    assert Deployer().registry.get("team-a").commit == remote.head()

    remote.commit({"definitions.py": definitions_py("one", "two", "three")})
    Deployer().deploy(load_spec(project.repos / "team-a" / "config.yml"))
    assert not first_version.exists()
    versions = [p for p in (project.work / "locations" / "team-a").iterdir() if not p.is_symlink()]
    assert len(versions) == 2


def test_serving_version_never_sees_a_later_checkout(project, git_remote):
    remote = git_remote(files={"definitions.py": definitions_py("one")})
    Deployer().deploy(spec_for(remote))
    served = (project.work / "locations" / "team-a" / "current").resolve()
    snapshot = served / "src" / "definitions.py"
    remote.commit({"definitions.py": BROKEN})
    with pytest.raises(ValidationFailed):
        Deployer().deploy(load_spec(project.repos / "team-a" / "config.yml"))
    # the checkout moved on, but the serving snapshot still holds the good code
    assert "no_such_module_anywhere" in (project.work / "checkouts" / "team-a" / "definitions.py").read_text()
    assert "no_such_module_anywhere" not in snapshot.read_text()


def test_a_failed_add_leaves_no_config_behind(project, git_remote):
    remote = git_remote(files={"definitions.py": BROKEN})
    with pytest.raises(ValidationFailed):
        Deployer().deploy(spec_for(remote))
    assert not (project.repos / "team-a").exists()


@pytest.mark.parametrize(
    "files, extra, error, fragment",
    [
        ({"definitions.py": definitions_py("a")}, {"branch": "nope"}, CloneError, "'nope' does not exist"),
        ({"definitions.py": definitions_py("a")}, {"python_file": "missing.py"}, SpecError, "python_file"),
        ({"definitions.py": BROKEN}, {}, ValidationFailed, "no_such_module_anywhere"),
        ({"a/definitions.py": "", "b/definitions.py": ""}, {}, DetectionError, "more than one"),
        ({"README.md": "no code"}, {}, DetectionError, "no code source"),
        ({"definitions.py": definitions_py("a")}, {"working_directory": "nope"}, SpecError, "working_directory"),
        ({"definitions.py": definitions_py("a"), "requirements.txt": "no-such-package-xyz-123==9.9\n"}, {}, Exception, "no-such-package-xyz-123"),
    ],
)
def test_bad_input_changes_nothing(project, git_remote, files, extra, error, fragment):
    good = git_remote("good", {"definitions.py": definitions_py("ok")})
    Deployer().deploy(spec_for(good, name="serving"))
    before = project.workspace_bytes()
    bad = git_remote("bad", files)
    with pytest.raises(error) as info:
        Deployer().deploy(spec_for(bad, **extra))
    assert fragment in str(info.value)
    assert project.workspace_bytes() == before
    assert Deployer().registry.get("team-a") is None


def test_failed_update_keeps_the_serving_version(project, git_remote):
    remote = git_remote(files={"definitions.py": definitions_py("one")})
    Deployer().deploy(spec_for(remote))
    before = project.workspace_bytes()
    entry = ws.read_entries(project.workspace)["team-a"]["grpc_server"]
    remote.commit({"definitions.py": BROKEN})
    with pytest.raises(ValidationFailed, match="previous version"):
        Deployer().deploy(load_spec(project.repos / "team-a" / "config.yml"))
    assert project.workspace_bytes() == before
    # the serving server was never touched, and no second one was left behind
    assert [s.port for s in servers(project)] == [entry["port"]] and grpc_ready(entry["port"])


def test_remove_keeps_data_and_is_idempotent(project, git_remote):
    remote = git_remote(files={"definitions.py": definitions_py("one")})
    Deployer().deploy(spec_for(remote))
    data = project.work / "storage" / "repos" / "team-a" / "assets" / "one"
    data.parent.mkdir(parents=True)
    data.write_text("precious")
    lock = project.work / "checkouts" / "team-a.lock"
    inode = lock.stat().st_ino
    port = servers(project)[0].port
    result = Deployer().remove("team-a")
    assert result.removed and result.workspace_changed
    assert servers(project) == [] and not grpc_ready(port)  # its code server was stopped
    # the lock file is never deleted: a process waiting on it would otherwise hold a lock
    # on a file that a third process can no longer see
    assert lock.stat().st_ino == inode
    assert "team-a" not in ws.read_entries(project.workspace)
    assert not (project.work / "checkouts" / "team-a").exists()
    assert not (project.repos / "team-a" / "config.yml").exists()
    assert data.read_text() == "precious"
    again = Deployer().remove("team-a")
    assert not again.removed and not again.workspace_changed


def test_environment_reaches_the_location(project, git_remote):
    code = 'import os\nimport dagster as dg\nassert os.environ["GREETING"] == "hi", os.environ.get("GREETING")\n' \
           'assert os.environ["META_DEPLOYER_REPO"] == "team-a"\ndefs = dg.Definitions()\n'
    remote = git_remote(files={"definitions.py": code})
    Deployer().deploy(spec_for(remote, environment=[{"name": "GREETING", "value": "hi"}]))
    config = yaml.safe_load((project.repos / "team-a" / "config.yml").read_text())
    assert config["environment"] == [{"name": "GREETING", "value": "hi"}]


def test_sync_finds_only_moved_repos(project, git_remote):
    a = git_remote("a", {"definitions.py": definitions_py("x")})
    b = git_remote("b", {"definitions.py": definitions_py("y")})
    Deployer().deploy(spec_for(a, name="alpha"))
    Deployer().deploy(spec_for(b, name="bravo"))
    assert Deployer().moved()[0] == []
    a.commit({"definitions.py": definitions_py("x", "z")})
    moved, problems = Deployer().moved()
    assert [s.name for s in moved] == ["alpha"] and problems == []


def test_dry_run_changes_nothing(project, git_remote):
    remote = git_remote(files={"definitions.py": definitions_py("one")})
    d = Deployer()
    text = d.dry_run(spec_for(remote))
    assert remote.head()[:12] in text and "python_file" in text and "would write workspace.yaml" in text
    assert not project.workspace.exists() and not (project.work / "checkouts").exists()
    assert not (project.repos / "team-a").exists()
    d.deploy(spec_for(remote))
    before = project.workspace_bytes()
    assert "nothing to do" in Deployer().dry_run(load_spec(project.repos / "team-a" / "config.yml"))
    assert "would remove team-a" in Deployer().dry_run_remove("team-a")
    assert project.workspace_bytes() == before and Deployer().registry.get("team-a") is not None


def test_dry_run_shows_a_dropped_grant_and_agrees_with_the_deploy(project, git_remote):
    """A read the owner does not share is dropped by the deploy; the dry run says so, and says
    "nothing to do" once that deploy serves (it plans with the same grants)."""
    remote = git_remote(files={"definitions.py": definitions_py("one")})
    spec = spec_for(remote, access={"read": ["finance"]}, python_file="definitions.py")
    text = Deployer().dry_run(spec)
    assert "no read access to finance" in text
    state = Deployer().deploy(spec)
    assert state.spec.access.read == () and Deployer().registry.get("team-a").metadata["reads"] == []
    again = Deployer().dry_run(spec)
    assert "no read access to finance" in again and "nothing to do" in again
