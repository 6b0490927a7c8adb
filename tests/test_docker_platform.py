"""The docker platform: ports (pure), and serve / switch / stop / observe with real containers."""

from __future__ import annotations

import itertools

import pytest
from dagster._grpc.client import DagsterGrpcClient
from dockerkit import (
    DEFINITIONS,
    FAILS_WHEN_SERVED,
    Collect,
    checkout,
    make_settings,
    repo_names,  # noqa: F401 - fixture
    spec_for,
    unique_name,
)

from meta_deployer import naming
from meta_deployer.errors import SettingsError, UnhealthyError
from meta_deployer.settings import DockerSettings
from meta_deployer.platforms.docker import (
    LABEL_PORT,
    DockerPlatform,
    grpc_ready,
    pick_pair,
    preferred_pair,
    workspace_entry,
)

# -- pure -------------------------------------------------------------------------------


def test_port_pairs_are_stable_and_probe_past_other_repos():
    p = preferred_pair("sales", 40000, 1000)
    assert p == preferred_pair("sales", 40000, 1000) and 40000 <= p < 42000 and p % 2 == 0
    assert pick_pair("sales", {}, 40000, 1000) == p
    assert pick_pair("sales", {p: "sales"}, 40000, 1000) == p  # its own pair
    moved = pick_pair("sales", {p: "other"}, 40000, 1000)
    assert moved != p and moved % 2 == 0
    with pytest.raises(SettingsError):
        pick_pair("sales", {40000: "other"}, 40000, 1)


def test_settings_defaults_and_errors():
    s = DockerSettings.from_env({})
    assert s.network == "host" and s.port_base == 20000 and s.dagster_home is None
    assert DockerSettings.from_env({"META_DEPLOYER_DOCKER_NETWORK": "bridge"}).network == "bridge"
    for bad in (
        {"META_DEPLOYER_DOCKER_NETWORK": "overlay"},
        {"META_DEPLOYER_DOCKER_PORT_BASE": "80"},
        {"META_DEPLOYER_HEALTH_TIMEOUT": "-1"},
        {"META_DEPLOYER_DOCKER_CONTAINER_CONTEXT": "{not json"},
    ):
        with pytest.raises(SettingsError):
            DockerSettings.from_env(bad)


def test_workspace_entry_shape():
    assert workspace_entry("a", 40002) == {"grpc_server": {"host": "localhost", "port": 40002, "location_name": "a"}}


# -- real containers ------------------------------------------------------------------------


def _deploy(platform: DockerPlatform, spec, settings, log):
    co = checkout(settings, spec)
    artifact = platform.build(spec, co, log)
    published = platform.publish(spec, artifact, log)
    return co, published, platform.serve(spec, published, co, log)


@pytest.mark.docker
def test_serve_switch_adopt_and_stop(tmp_path, git_remote, repo_names):
    name = unique_name()
    repo_names.append(name)
    settings = make_settings(tmp_path, META_DEPLOYER_REGISTRY="")  # no push: test_images covers it
    platform = DockerPlatform(settings)
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="one", value=1)})
    spec = spec_for(name, remote.url, python_file="definitions.py")
    log = Collect()

    co, published, served = _deploy(platform, spec, settings, log)
    port1 = served.metadata["port"]
    assert served.changed and served.workspace_entry == workspace_entry(name, port1)
    platform.after_switch(spec, served, log)
    live = platform.client.containers.get(naming.container_name(name))
    assert live.status == "running" and grpc_ready(port1)
    # One identity per version: the server reports its deploy fingerprint (--fixed-server-id).
    server_id = platform.server_id(spec, published, co)
    assert server_id.startswith(f"{name}-{co.commit[:12]}-")
    assert DagsterGrpcClient(port=port1, host="127.0.0.1").get_server_id() == server_id
    assert live.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    env = dict(item.split("=", 1) for item in live.attrs["Config"]["Env"])
    assert env["META_DEPLOYER_REPO"] == name and env["META_DEPLOYER_PREFIX"] == f"repos/{name}"
    assert env["DAGSTER_HOME"] == str(settings.env["DAGSTER_HOME"])
    assert any(m["Destination"] == env["DAGSTER_HOME"] for m in live.attrs["Mounts"])
    record = {"artifact": published.ref, "workspace_entry": served.workspace_entry}
    assert platform.is_serving(name, record)

    # After a restart of Dagster: a fresh platform object adopts what runs.
    fresh = DockerPlatform(settings)
    observed = fresh.observe()[name]
    assert observed.workspace_entry == served.workspace_entry and observed.commit == co.commit
    assert observed.artifact == published.ref and observed.status.startswith("running")
    again = fresh.serve(spec, published, co, log)
    assert not again.changed and again.metadata["container_id"] == live.id
    assert len(fresh.client.containers.list(all=True, filters={"label": f"meta-deployer.repo={name}"})) == 1

    # A new commit: the new version starts on the other port while the old one still serves.
    remote.commit({"definitions.py": DEFINITIONS.format(asset="two", value=2)})
    co2, published2, served2 = _deploy(platform, spec, settings, log)
    port2 = served2.metadata["port"]
    assert port2 != port1 and {port1, port2} == {min(port1, port2), min(port1, port2) + 1}
    assert grpc_ready(port1) and grpc_ready(port2)  # both serve until the switch
    assert DagsterGrpcClient(port=port2, host="127.0.0.1").get_server_id() == platform.server_id(spec, published2, co2)
    assert platform.server_id(spec, published2, co2) != server_id
    platform.after_switch(spec, served2, log)
    containers = platform.client.containers.list(all=True, filters={"label": f"meta-deployer.repo={name}"})
    assert [c.name for c in containers] == [naming.container_name(name)]
    assert containers[0].labels[LABEL_PORT] == str(port2) and not grpc_ready(port1)
    assert platform.is_serving(name, {"artifact": published2.ref, "workspace_entry": served2.workspace_entry})
    assert not platform.is_serving(name, record)

    lines = list(itertools.islice(platform.logs(name, follow=True, tail=50), 1))
    assert lines  # following yields the server's output as it comes

    platform.stop(name, purge=False, log=log)
    assert platform.client.containers.list(all=True, filters={"label": f"meta-deployer.repo={name}"}) == []
    assert name not in platform.observe()
    platform.stop(name, purge=False, log=log)  # idempotent


@pytest.mark.docker
def test_unhealthy_new_version_keeps_the_old_one_serving(tmp_path, git_remote, repo_names):
    name = unique_name()
    repo_names.append(name)
    settings = make_settings(tmp_path, META_DEPLOYER_REGISTRY="")  # no push: test_images covers it
    platform = DockerPlatform(settings)
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="good", value=1)})
    spec = spec_for(name, remote.url, python_file="definitions.py")
    log = Collect()
    _, published, served = _deploy(platform, spec, settings, log)
    platform.after_switch(spec, served, log)
    old = served.metadata["port"]

    remote.commit({"definitions.py": FAILS_WHEN_SERVED})
    with pytest.raises(UnhealthyError) as info:
        _deploy(platform, spec, settings, log)
    assert isinstance(info.value, UnhealthyError)
    containers = platform.client.containers.list(all=True, filters={"label": f"meta-deployer.repo={name}"})
    assert [c.name for c in containers] == [naming.container_name(name)]
    assert grpc_ready(old)
    assert platform.is_serving(name, {"artifact": published.ref, "workspace_entry": served.workspace_entry})


@pytest.mark.docker
def test_bridge_network_is_refused_clearly_on_an_engine_without_one(tmp_path, git_remote, repo_names):
    """The CI engine has no bridge network (DESIGN.md): asking for one fails at once, leaving nothing."""
    name = unique_name()
    repo_names.append(name)
    settings = make_settings(tmp_path, META_DEPLOYER_DOCKER_NETWORK="bridge", META_DEPLOYER_REGISTRY="")
    platform = DockerPlatform(settings)
    if platform.client.networks.list(names=["bridge"]):
        pytest.skip("this engine has a bridge network; the host-network tests cover serving")
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="b", value=1)})
    spec = spec_for(name, remote.url, python_file="definitions.py")
    co = checkout(settings, spec)
    published = platform.publish(spec, platform.build(spec, co, Collect()), Collect())
    with pytest.raises(SettingsError):
        platform.serve(spec, published, co, Collect())
    assert platform.client.containers.list(all=True, filters={"label": f"meta-deployer.repo={name}"}) == []
