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
from meta_deployer.spec import parse_spec
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
    # The instance reaches the container (its sqlite folders at the same paths), but not DAGSTER_HOME whole.
    destinations = {m["Destination"] for m in live.attrs["Mounts"]}
    assert f"{env['DAGSTER_HOME']}/history" in destinations and env["DAGSTER_HOME"] not in destinations
    # Mounted code: one dependency image serves many commits, so the record's code archive names the version.
    record = {"artifact": published.ref, "workspace_entry": served.workspace_entry,
              "code_sha256": published.metadata["code_sha256"]}
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
    assert platform.is_serving(name, {"artifact": published2.ref, "workspace_entry": served2.workspace_entry,
                                      "code_sha256": published2.metadata["code_sha256"]})
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
    assert platform.is_serving(name, {"artifact": published.ref, "workspace_entry": served.workspace_entry,
                                      "code_sha256": published.metadata["code_sha256"]})


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


#: beta's definitions: at import, try every path beta may and may not use, and (while validating
#: only) a TCP connection; write what happened to beta's own storage folder when served.
PROBE = '''\
import json
import os
import socket

import dagster as dg

STORAGE = os.environ.get("META_DEPLOYER_STORAGE_DIR", "")
HOME = os.environ.get("DAGSTER_HOME", "")
VALIDATING = bool(os.environ.get("META_DEPLOYER_VALIDATING"))
ME, ALPHA, GAMMA, PORT = "{me}", "{alpha}", "{gamma}", {port}


def attempt(fn, *args):
    try:
        return "ok:" + str(fn(*args))[:80]
    except Exception as exc:
        return type(exc).__name__


def read(path):
    with open(path) as f:
        return f.read()


def write(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)  # as root in the container, it may try hard
    with open(path, "a") as f:
        f.write("beta was here")
    return "written"


def listing(path):
    return sorted(os.listdir(path))


def connect():
    with socket.create_connection(("127.0.0.1", PORT), timeout=3) as s:
        s.sendall(b"validate" if VALIDATING else b"serve")
    return "connected"


repos = f"{{STORAGE}}/repos"
results = {{
    # What the container sees, before anything below creates folders in its own file system.
    "storage_root": attempt(listing, STORAGE),
    "repos": attempt(listing, repos),
    "home": attempt(listing, HOME),
    "network": attempt(connect),
    "read_alpha": attempt(read, f"{{repos}}/{{ALPHA}}/assets/secret"),
    "read_alpha_code": attempt(listing, f"{{repos}}/{{ALPHA}}/code"),
    "read_granted_code": attempt(listing, f"{{repos}}/{{GAMMA}}/code"),
    "write_alpha": attempt(write, f"{{repos}}/{{ALPHA}}/assets/secret"),
    "read_granted": attempt(read, f"{{repos}}/{{GAMMA}}/assets/data"),
    "write_granted": attempt(write, f"{{repos}}/{{GAMMA}}/assets/data"),
    "read_shared": attempt(read, f"{{repos}}/shared/assets/common"),
    "write_shared": attempt(write, f"{{repos}}/shared/assets/common"),
    "write_own": attempt(write, f"{{repos}}/{{ME}}/assets/mine"),
    "read_instance_config": attempt(read, f"{{HOME}}/dagster.yaml"),
    "write_instance_config": attempt(write, f"{{HOME}}/dagster.yaml"),
    "read_instance_storage": attempt(read, f"{{HOME}}/storage/secret"),
}}
if not VALIDATING:
    with open(f"{{repos}}/{{ME}}/probe.json", "w") as f:
        json.dump(results, f)


@dg.asset
def probed() -> int:
    return 1


defs = dg.Definitions(assets=[probed])
'''


class Listener:
    """A TCP listener on 127.0.0.1 recording what each connection sends."""

    def __init__(self) -> None:
        import socket
        import threading

        self.received: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(3)
                try:
                    self.received.append(conn.recv(100))
                except OSError:
                    pass


@pytest.mark.docker
def test_a_container_mounts_only_its_repo_and_validation_has_no_network(tmp_path, git_remote, repo_names, monkeypatch):
    """Mounts: own folder rw, shared and granted ro, the instance's config ro and its sqlite folders;
    beta's code cannot read or write alpha's file; validation runs with no network at all."""
    import json

    from docker.models.containers import ContainerCollection

    alpha, beta, gamma = unique_name("alpha"), unique_name("beta"), unique_name("gamma")
    repo_names += [alpha, beta]
    settings = make_settings(tmp_path, META_DEPLOYER_REGISTRY="")  # no push: test_images covers it
    home, storage = settings.docker.dagster_home, settings.storage_dir
    repos = storage / "repos"
    # What other tenants and the instance hold before beta arrives.
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (home / "storage").mkdir()
    (home / "storage" / "secret").write_text("the default IO manager's folder")
    for repo, rel, text in ((alpha, "assets/secret", "alpha's data"), (gamma, "assets/data", "gamma's data"),
                            ("shared", "assets/common", "for everyone")):
        (repos / repo / rel).parent.mkdir(parents=True)
        (repos / repo / rel).write_text(text)
    (storage / "system" / "logs").mkdir(parents=True)
    (repos / gamma / "code").mkdir()
    (repos / gamma / "code" / f"{'0' * 40}.tar.gz").write_bytes(b"gamma's code")

    # Every container the build creates is inspected as the engine records it, before it is removed.
    network_modes: dict[str, str] = {}
    original_create = ContainerCollection.create

    def create(self, image, command=None, **kwargs):
        container = original_create(self, image, command, **kwargs)
        network_modes[(kwargs.get("labels") or {}).get("meta-deployer.validate", container.name)] = (
            self.client.api.inspect_container(container.id)["HostConfig"]["NetworkMode"]
        )
        return container

    monkeypatch.setattr(ContainerCollection, "create", create)
    listener = Listener()
    platform = DockerPlatform(settings)
    log = Collect()
    alpha_spec = spec_for(alpha, git_remote("alpha", {"definitions.py": DEFINITIONS.format(asset="a", value=1)}).url,
                          python_file="definitions.py")
    probe = PROBE.format(me=beta, alpha=alpha, gamma=gamma, port=listener.port)
    beta_spec = parse_spec(
        {"name": beta, "git_url": git_remote("beta", {"definitions.py": probe}).url, "python_file": "definitions.py",
         "access": {"read": [gamma]}},
        "test spec beta",
    )
    served = {}
    for spec in (alpha_spec, beta_spec):
        _, _, served[spec.name] = _deploy(platform, spec, settings, log)
        platform.after_switch(spec, served[spec.name], log)

    # Validation had no network at all; the served container (host networking) reached the listener.
    assert network_modes[alpha] == network_modes[beta] == "none"
    assert b"serve" in listener.received and b"validate" not in listener.received

    def mounts(name: str) -> set[tuple[str, str, bool]]:
        attrs = platform.client.containers.get(naming.container_name(name)).attrs
        assert all(m["Type"] == "bind" for m in attrs["Mounts"])
        return {(m["Source"], m["Destination"], m["RW"]) for m in attrs["Mounts"]}

    instance = {(str(home / "dagster.yaml"), str(home / "dagster.yaml"), False),
                (str(home / "history"), str(home / "history"), True),
                (str(home / "schedules"), str(home / "schedules"), True)}
    assert mounts(alpha) == instance | {(str(repos / alpha),) * 2 + (True,), (str(repos / "shared"),) * 2 + (False,)}
    assert mounts(beta) == instance | {
        (str(repos / beta),) * 2 + (True,),
        (str(repos / "shared"),) * 2 + (False,),
        (str(repos / gamma / "assets"),) * 2 + (False,),  # a grant: its assets, never its code archives
    }

    # beta's code, running in its container, against every path.
    results = json.loads((repos / beta / "probe.json").read_text())
    print(results)
    assert results["read_alpha"] == "FileNotFoundError"  # alpha's folder is not there at all
    # As root in its container beta may create a folder of that name, but only in its own file system:
    assert (repos / alpha / "assets" / "secret").read_text() == "alpha's data"
    assert sorted(p.name for p in (repos / alpha / "assets").rglob("*")) == ["secret"]
    assert sorted(p.name for p in (repos / alpha).iterdir()) == ["assets", "code"]  # its code archive, nothing of beta's
    assert results["read_granted"] == "ok:gamma's data" and results["write_granted"] == "OSError"
    assert results["read_shared"] == "ok:for everyone" and results["write_shared"] == "OSError"
    assert (repos / gamma / "assets" / "data").read_text() == "gamma's data"
    assert (repos / "shared" / "assets" / "common").read_text() == "for everyone"
    assert results["write_own"] == "ok:written" and (repos / beta / "assets" / "mine").read_text() == "beta was here"
    assert results["read_instance_config"].startswith("ok:telemetry") and results["write_instance_config"] == "OSError"
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    assert results["read_instance_storage"] == "FileNotFoundError"
    assert results["storage_root"] == "ok:['repos']"  # no system/, nothing else of the root
    assert results["repos"] == f"ok:{sorted([beta, gamma, 'shared'])}"
    # alpha and beta serve mounted code: each archive is under its own folder, which only it mounts.
    assert list((repos / alpha / "code").glob("*.tar.gz")) and results["read_alpha_code"] == "FileNotFoundError"
    assert results["read_granted_code"] == "FileNotFoundError"  # granted gamma's assets, not its code
    assert results["home"] == "ok:['dagster.yaml', 'history', 'schedules']"


def test_location_env_copies_only_the_named_variables_and_never_the_deployers_own():
    from meta_deployer.platforms.docker import DockerPlatform
    from meta_deployer.settings import Settings

    base = {"META_DEPLOYER_PLATFORM": "docker", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s",
            "OTHER_SECRET": "never", "DOCKER_HOST": "tcp://127.0.0.1:2375"}
    spec = parse_spec({"name": "envy", "git_url": "https://example.com/x.git", "python_file": "d.py"}, "test")
    plain = DockerPlatform(Settings.from_env(base)).storage_env(spec)
    assert "AWS_ACCESS_KEY_ID" not in plain and "OTHER_SECRET" not in plain and "DOCKER_HOST" not in plain
    named = DockerPlatform(Settings.from_env({**base, "META_DEPLOYER_DOCKER_LOCATION_ENV": "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY"}))
    env = named.storage_env(spec)
    assert env["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLE" and env["AWS_SECRET_ACCESS_KEY"] == "s"
    assert "OTHER_SECRET" not in env and "DOCKER_HOST" not in env
    with pytest.raises(SettingsError, match="deployer's own"):
        Settings.from_env({**base, "META_DEPLOYER_DOCKER_LOCATION_ENV": "DOCKER_HOST"})
