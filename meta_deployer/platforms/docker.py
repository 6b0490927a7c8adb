"""The ``docker`` platform: one container per repo on the local Docker engine.

``build`` and ``publish`` are :mod:`meta_deployer.platforms.images` (build, validate,
push). ``serve`` runs the image as a gRPC code server through the location entry point
(``meta_deployer_runtime.entrypoint``, from the image's runtime layer), which loads the
spec's code source from the image's WORKDIR plus ``working_directory`` and gives
definitions without an ``io_manager`` the prefix-enforcing one, as on the dev
platform. The workspace entry is ``grpc_server`` at ``localhost:<port>``.

**Blue/green on a stable pair of ports.** Each repo owns two ports, ``p`` and
``p+1``, derived from a hash of its name (collisions with other repos are
probed past, and the pair is remembered in container labels). The live
container, ``dagster-repo-<name>``, listens on one of them. An update starts
the new version as ``dagster-repo-<name>-next`` on the *other* port and waits
until its gRPC server answers; only then does the pipeline point
workspace.yaml at it, and ``after_switch`` retires the old container (after
letting its in-flight runs finish, up to a drain timeout) and renames the new
one to ``dagster-repo-<name>``. If the new version never becomes healthy it is
removed, the old one was never touched, and :class:`UnhealthyError` carries
its last log lines. Restarting behind one fixed port would also be picked up
by the webserver (it polls the server id every second), but it must stop the
old server first, so a version that fails to start would leave the repo with
nothing serving; blue/green never does.

**Networking** (``META_DEPLOYER_DOCKER_NETWORK``): ``host`` (the default)
runs the server in the host's network namespace listening on 127.0.0.1:<port>
only. It is the default because the CI engine has no bridge (DESIGN.md) and
because on Linux it needs no NAT and no iptables rules. ``bridge`` publishes
container port 4000 on 127.0.0.1:<port> instead (Docker Desktop, where host
networking does not reach the host).

**Mounts: only what the repo may use** (:meth:`DockerPlatform.mounts`, each at the
same path inside, so the paths the IO manager and the instance compute stay valid):

- storage, when it is the local folder (no bucket): ``<storage_dir>/repos/<name>/``
  read-write (its assets, op outputs, compute logs and code archives), ``repos/shared/`` and
  ``repos/<other>/assets/`` for each repo in the spec's ``access.read`` read-only (a grant never
  reaches another repo's code archives). Nothing
  else of the storage root: no other repo's folder, no ``system/``;
- the instance, when ``DAGSTER_HOME`` is set: runs launched from the UI execute
  inside the container (the code server starts them) and write to the instance.
  For the embedded sqlite instance that is ``dagster.yaml`` (read-only) and the
  folders its storages write: ``history/`` (runs.db, one event log per run and the
  shared index.db) and ``schedules/`` (opened read-write by every instance: WAL mode).
  Not ``storage/`` (the default filesystem IO manager's folder, shared by all
  repos) nor anything else of ``DAGSTER_HOME``. ``history/`` holds every repo's
  runs and events and cannot be split per repo with sqlite: that exposure remains
  (README, "Images and the docker platform"); a Postgres instance moves it from
  files to credentials, it does not remove it. The container runs as the owner of
  ``DAGSTER_HOME`` so the runs can write there. Without ``DAGSTER_HOME`` nothing
  of the instance is mounted and the image's own (non-root) user is kept.

**Adoption.** Labels carry the repo, commit, image, digest, port and the port
pair, so after a restart of the machine or of Dagster ``observe`` reports the
running containers and the next deploy reuses them instead of starting
duplicates (the restart policy brings them back with the engine).

Settings: ``settings.docker`` (:class:`meta_deployer.settings.DockerSettings`: network,
port range, health, poll and drain timeouts, container context, ``DAGSTER_HOME``) and
``settings.images``, read with every other setting in :mod:`meta_deployer.settings`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from meta_deployer import codearchive, naming
from meta_deployer.errors import SettingsError, UnhealthyError
from meta_deployer.model import Artifact, Checkout, Log, Observed, Published, Served
from meta_deployer.platforms import images, location
from meta_deployer.settings import DEFAULT_PORT_BASE, DEFAULT_PORT_PAIRS, DockerSettings, Settings
from meta_deployer.spec import RepoSpec

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

STOP_TIMEOUT_S = 20
RESTART_POLICY = {"Name": "unless-stopped"}
LOG_TAIL_LINES = 40
NEXT_SUFFIX = "-next"
#: Bump when the way a container is started changes: running containers are then replaced.
#: 3: only the repo's own storage and the instance's run folders are mounted; 4: the code server
#: starts with --fixed-server-id; 5: the container reports its image and a run container context
#: (DAGSTER_CURRENT_IMAGE, DAGSTER_CONTAINER_CONTEXT), so a DockerRunLauncher runs it in its own image.
SERVE_VERSION = 5

#: The instance's config file, mounted read-only.
INSTANCE_CONFIG = "dagster.yaml"
#: What the embedded sqlite instance writes under DAGSTER_HOME (run storage and event logs in
#: history/, schedule storage in schedules/), mounted read-write: runs execute in the container.
INSTANCE_RW_FOLDERS = ("history", "schedules")

L = images.LABEL_PREFIX
LABEL_REPO = f"{L}repo"
LABEL_COMMIT = f"{L}commit"
LABEL_IMAGE = f"{L}image"
LABEL_DIGEST = f"{L}digest"
LABEL_PORT = f"{L}port"
LABEL_PAIR = f"{L}port-pair"
LABEL_FINGERPRINT = f"{L}fingerprint"
LABEL_LOCATION = f"{L}location"
#: The sha256 of the code archive a container serves (mounted code), else empty.
LABEL_CODE = f"{L}code-sha256"


def preferred_pair(name: str, base: int = DEFAULT_PORT_BASE, pairs: int = DEFAULT_PORT_PAIRS) -> int:
    """The first port of the pair a repo prefers (a hash of its name; pure)."""
    index = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % pairs
    return base + 2 * index


def pick_pair(name: str, taken: Mapping[int, str], base: int = DEFAULT_PORT_BASE, pairs: int = DEFAULT_PORT_PAIRS) -> int:
    """The repo's pair: its preferred one, or the next one no other repo holds (pure)."""
    start = (preferred_pair(name, base, pairs) - base) // 2
    for i in range(pairs):
        candidate = base + 2 * ((start + i) % pairs)
        if taken.get(candidate, name) == name:
            return candidate
    raise SettingsError(
        f"all {pairs} port pairs from {base} are taken; raise META_DEPLOYER_DOCKER_PORT_PAIRS"
    )


def workspace_entry(name: str, port: int) -> dict[str, Any]:
    """The workspace.yaml entry of a repo served on ``localhost:<port>``."""
    return {"grpc_server": {"host": "localhost", "port": port, "location_name": name}}



def grpc_ready(port: int) -> bool:
    """True when a Dagster gRPC server answers a ping on 127.0.0.1:<port>."""
    from dagster._grpc.client import DagsterGrpcClient

    try:
        return DagsterGrpcClient(port=port, host="127.0.0.1").ping("meta-deployer").get("echo") == "meta-deployer"
    except Exception:  # any failure to connect or answer means "not ready yet"
        return False


def current_runs(port: int) -> list[str] | None:
    """Run ids executing under the code server on ``port``; None when it does not answer."""
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value

    try:
        result = deserialize_value(DagsterGrpcClient(port=port, host="127.0.0.1").get_current_runs())
        return list(result.current_runs)
    except Exception:  # a server that is gone has no runs to wait for
        return None


class DockerPlatform:
    """Runs each repo as a container on the local Docker engine."""

    name = "docker"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.docker: DockerSettings = settings.docker
        self.images = settings.images
        self._client: docker.DockerClient | None = None

    # -- helpers -----------------------------------------------------------
    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = images.docker_client(self.settings.env)
        return self._client

    def _lock(self, name: str) -> FileLock:
        self.settings.locks_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.settings.locks_dir / f"docker-{name}.lock"), timeout=900)

    def _ports_lock(self) -> FileLock:
        self.settings.locks_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.settings.locks_dir / "docker-ports.lock"), timeout=900)

    def _containers(self, name: str | None = None) -> list[Container]:
        label = f"{LABEL_REPO}={name}" if name else LABEL_REPO
        return self.client.containers.list(all=True, filters={"label": label})

    def _by_name(self, name: str) -> dict[str, Container]:
        return {c.name: c for c in self._containers(name)}

    def storage_env(self, spec: RepoSpec) -> dict[str, str]:
        """What a container gets besides the spec's environment (see the module docstring)."""
        # No bucket configured: the local storage folder, as on the dev platform (mounted).
        env = location.location_env(
            spec,
            location.storage_env(
                spec,
                bucket=self.settings.storage_bucket,
                storage_dir=str(self.settings.storage_dir),
                endpoint_url=self.settings.aws_endpoint_url,
            ),
        )
        for name in self.docker.location_env:  # platform-wide, chosen by the platform team
            if name in self.settings.env:
                env[name] = self.settings.env[name]
        if self.docker.dagster_home:
            env["DAGSTER_HOME"] = str(self.docker.dagster_home)
        if self.docker.container_context:
            env["DAGSTER_CONTAINER_CONTEXT"] = self.docker.container_context
        return env

    def run_container_context(self, env: dict[str, str], kwargs: dict[str, Any]) -> str:
        """``DAGSTER_CONTAINER_CONTEXT`` for the location's runs under dagster-docker's
        ``DockerRunLauncher``: the same environment, mounts, user and working directory as the code
        server (the network is the launcher's), so a run executes in the repo's own image with the repo's own storage
        and nothing more (``META_DEPLOYER_DOCKER_CONTAINER_CONTEXT`` is merged in, and wins)."""
        context = json.loads(self.docker.container_context) if self.docker.container_context else {}
        ours = {
            "env_vars": [f"{k}={v}" for k, v in sorted(env.items()) if k != "DAGSTER_CONTAINER_CONTEXT"],
            "container_kwargs": {
                key: kwargs[key] for key in ("volumes", "user", "working_dir") if kwargs.get(key)
            },
        }
        theirs = context.get("docker") or {}
        merged = {
            **ours,
            **theirs,
            "env_vars": ours["env_vars"] + list(theirs.get("env_vars") or []),
            "container_kwargs": {**ours["container_kwargs"], **(theirs.get("container_kwargs") or {})},
        }
        return json.dumps({**context, "docker": merged}, sort_keys=True)

    def mounts(self, spec: RepoSpec) -> tuple[dict[str, dict[str, str]], str | None]:
        """Bind mounts (host path -> same path inside, ``rw`` or ``ro``) and the user to run as.

        Only what ``spec``'s repo may use (see the module docstring). Folders are created when
        missing so that the binds work (the engine would create them owned by root otherwise).
        """
        from meta_deployer_runtime.io import REPOS_ROOT, SHARED_REPO  # the storage layout (imports dagster)

        volumes: dict[str, dict[str, str]] = {}

        def bind(path: Path, mode: str) -> None:
            volumes[str(path)] = {"bind": str(path), "mode": mode}

        user = None
        home = self.docker.dagster_home
        if home:
            home.mkdir(parents=True, exist_ok=True)
            st = home.stat()
            user = f"{st.st_uid}:{st.st_gid}"
            config = home / INSTANCE_CONFIG
            if config.is_file():  # a missing file would be created as a folder by the engine
                bind(config, "ro")
            for folder in INSTANCE_RW_FOLDERS:
                (home / folder).mkdir(exist_ok=True)
                bind(home / folder, "rw")
        storage = self.settings.storage_dir
        if not self.settings.storage_bucket and storage:
            repos = storage / REPOS_ROOT
            for other in sorted({SHARED_REPO, *spec.access.read} - {spec.name}):
                # A grant reaches the other repo's assets only, never its code archives, outputs or logs.
                folder = repos / other if other == SHARED_REPO else repos / other / "assets"
                folder.mkdir(parents=True, exist_ok=True)
                bind(folder, "ro")
            (repos / spec.name).mkdir(parents=True, exist_ok=True)
            bind(repos / spec.name, "rw")
        return volumes, user

    def settings_fingerprint(self, spec: RepoSpec) -> str:
        data = {
            "network": self.docker.network,
            "ports": [self.docker.port_base, self.docker.port_pairs],
            "registry": self.images.registry,
            "base": self.images.base_image,
            "env": self.storage_env(spec),
            # The instance's config is bound only when it exists: a container started without it must be replaced.
            "instance_config": bool(self.docker.dagster_home and (self.docker.dagster_home / INSTANCE_CONFIG).is_file()),
            "template": images.TEMPLATE_VERSION,
            "serve": SERVE_VERSION,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def _container_fingerprint(self, spec: RepoSpec, published: Published) -> str:
        data = [published.ref, spec.content_hash(), self.settings_fingerprint(spec)]
        if published.metadata.get("code_sha256"):  # mounted code: the same image serves many commits
            data.append(published.metadata["code_sha256"])
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]

    def server_id(self, spec: RepoSpec, published: Published, checkout: Checkout) -> str:
        """The code server's ``--fixed-server-id``: the same for the same image, commit, spec and settings."""
        return location.server_id(spec, checkout.commit, published.ref, self.settings_fingerprint(spec))

    def _pair(self, name: str) -> int:
        """The repo's port pair: from its containers' labels, else the first free one."""
        taken: dict[int, str] = {}
        for c in self._containers():
            try:
                pair = int(c.labels.get(LABEL_PAIR, ""))
            except ValueError:
                continue
            repo = c.labels.get(LABEL_REPO, "")
            if repo == name:
                return pair
            taken[pair] = repo
        return pick_pair(name, taken, self.docker.port_base, self.docker.port_pairs)

    # -- build and publish: meta_deployer.platforms.images -----------------------------
    def build(self, spec: RepoSpec, checkout: Checkout, log: Log, *, run_id: str | None = None) -> Artifact:
        """The image (a dependency image when the code is mounted), then for mounted code the commit's
        archive, written once to the storage root, and its definitions loaded from it in that image."""
        artifact = images.build_image(spec, checkout, self.images, log, run_id=run_id, mount=True)
        if not artifact.metadata.get("mounted"):
            return artifact
        archive = codearchive.publish_code(self.settings, checkout, log)
        version = self._validate_mounted(spec, artifact, checkout, archive, log)
        return replace(artifact, metadata={
            **artifact.metadata, **archive.metadata(), "code_written": archive.written, "dagster_version": version,
        })

    def _validate_mounted(
        self, spec: RepoSpec, artifact: Artifact, checkout: Checkout, archive: codearchive.CodeArchive, log: Log
    ) -> str:
        """Load the commit's definitions in the dependency image, from the archive, with no network; the
        image's dagster release (the validator's report)."""
        if artifact.metadata.get("in_registry") and not images.local_image_id(self.client, artifact.ref):
            auth = images.ecr_login(self.images.registry, self.settings.env)[1] if images.is_ecr(self.images.registry) else None
            images.pull_image(self.client, artifact.ref, auth, log)
        if archive.uri.startswith("s3://"):
            # No network in validation: the same bytes (same sha256) from a local copy.
            with tempfile.TemporaryDirectory(prefix="md-code-") as tmp:
                local = Path(tmp) / "code.tar.gz"
                local.write_bytes(codearchive.make_archive(checkout.path))
                return images.validate_image(self.client, spec, artifact.ref, self.images, log, code=(str(local), archive.sha256))
        return images.validate_image(self.client, spec, artifact.ref, self.images, log, code=(archive.uri, archive.sha256))

    def publish(self, spec: RepoSpec, artifact: Artifact, log: Log) -> Published:
        published = images.push_image(spec, artifact, self.images.registry, log, self.settings.env)
        code = {k: artifact.metadata[k] for k in ("code_archive", "code_sha256") if k in artifact.metadata}
        return replace(published, metadata={**published.metadata, **code}) if code else published

    # -- serve -------------------------------------------------------------
    def serve(self, spec: RepoSpec, published: Published, checkout: Checkout, log: Log) -> Served:
        """Start the new version beside the old one and wait until it answers (see the module docstring)."""
        live_name = naming.container_name(spec.name)
        next_name = live_name + NEXT_SUFFIX
        fingerprint = self._container_fingerprint(spec, published)
        auth = images.ecr_login(self.images.registry, self.settings.env)[1] if images.is_ecr(self.images.registry) else None
        images.pull_image(self.client, published.ref, auth, log)
        if self.docker.network == "bridge" and not self.client.networks.list(names=["bridge"]):
            raise SettingsError(
                "META_DEPLOYER_DOCKER_NETWORK=bridge, but this engine has no bridge network "
                "(dockerd runs with --bridge=none); use META_DEPLOYER_DOCKER_NETWORK=host"
            )
        with self._lock(spec.name):
            existing = self._by_name(spec.name)
            live, candidate = existing.get(live_name), existing.get(next_name)
            for c in (live, candidate):
                if c is not None and c.labels.get(LABEL_FINGERPRINT) == fingerprint and c.status == "running":
                    port = int(c.labels[LABEL_PORT])
                    if grpc_ready(port):
                        log(f"{c.name} already serves {published.ref} on port {port}; adopting it")
                        return self._served(spec, c, port, changed=c is not live)
            if candidate is not None:
                log(f"removing {next_name} left over from an earlier deploy")
                candidate.remove(force=True)
            with self._ports_lock():
                pair = self._pair(spec.name)
                old_port = int(live.labels.get(LABEL_PORT, 0)) if live is not None else None
                port = pair + 1 if old_port == pair else pair
                if not location.port_free(port, ("127.0.0.1", "0.0.0.0")):
                    raise UnhealthyError(
                        f"port {port} (of {spec.name}'s pair {pair}/{pair + 1}) is in use by another process; "
                        "stop it, or move the docker platform's ports with META_DEPLOYER_DOCKER_PORT_BASE"
                    )
                name = next_name if live is not None else live_name
                container = self._create(spec, published, checkout, name, port, pair, fingerprint)
            log(f"started {name} ({container.short_id}) from {published.ref} on port {port}; waiting until it answers")
            self._wait_ready(spec, container, port, log)
            return self._served(spec, container, port, changed=True)

    def _create(
        self, spec: RepoSpec, published: Published, checkout: Checkout, name: str, port: int, pair: int, fingerprint: str
    ) -> Container:
        volumes, user = self.mounts(spec)
        env = {**self.storage_env(spec), **location.code_source_env(spec)}
        code_sha = published.metadata.get("code_sha256") or ""
        if code_sha:  # mounted code: the entry point fetches, checks and unpacks the commit's archive
            env.update(images.mounted_code_env(spec, published.metadata["code_archive"], code_sha))
        host_mode = self.docker.network == "host"
        inner_port = port if host_mode else location.CONTAINER_PORT
        image_workdir = self.client.api.inspect_image(published.ref)["Config"].get("WorkingDir")
        labels = {
            LABEL_REPO: spec.name,
            LABEL_LOCATION: spec.name,
            LABEL_COMMIT: checkout.commit,
            LABEL_IMAGE: published.ref,
            LABEL_DIGEST: published.digest or "",
            LABEL_PORT: str(port),
            LABEL_PAIR: str(pair),
            LABEL_FINGERPRINT: fingerprint,
            LABEL_CODE: code_sha,
        }
        kwargs: dict[str, Any] = {
            "name": name,
            # Served through the location entry point (runtime layer): the repo's definitions,
            # with the prefix-enforcing IO manager when they set none.
            # One identity per version (--fixed-server-id): a restarted container or a replica of the
            # same version never looks like a new server to the webserver's GetServerId poll.
            "command": location.entrypoint_command(
                "127.0.0.1" if host_mode else "0.0.0.0", inner_port, self.server_id(spec, published, checkout)
            ),
            "working_dir": (image_workdir or "/") if code_sha else location.container_workdir(image_workdir, spec),
            "environment": env,
            "labels": labels,
            "restart_policy": RESTART_POLICY,
            "volumes": volumes,
            "init": True,
            "detach": True,
            "healthcheck": {
                "test": ["CMD", *location.health_command(inner_port)],
                "interval": 30 * 10**9,
                "timeout": 10 * 10**9,
                "retries": 3,
                "start_period": 60 * 10**9,
            },
        }
        if user:
            kwargs["user"] = user
            # That uid may have no home in the image; give it a writable one.
            env.setdefault("HOME", "/tmp")
        if host_mode:
            kwargs["network_mode"] = "host"
        else:
            kwargs["ports"] = {f"{location.CONTAINER_PORT}/tcp": ("127.0.0.1", port)}
        env["DAGSTER_CURRENT_IMAGE"] = published.ref
        env["DAGSTER_CONTAINER_CONTEXT"] = self.run_container_context(env, kwargs)
        import docker

        kwargs.pop("detach")
        container = self.client.containers.create(published.ref, **kwargs)
        try:
            container.start()
        except docker.errors.APIError as exc:
            container.remove(force=True)
            raise UnhealthyError(
                f"the engine could not start {name} for {spec.name}: {exc.explanation or exc}"
                + (" (no bridge network on this engine: use META_DEPLOYER_DOCKER_NETWORK=host)" if not host_mode else "")
            ) from exc
        return container

    def _wait_ready(self, spec: RepoSpec, container: Container, port: int, log: Log) -> None:
        deadline = time.monotonic() + self.docker.health_timeout_s
        reason = f"did not answer on port {port} within {self.docker.health_timeout_s:.0f}s (META_DEPLOYER_HEALTH_TIMEOUT)"
        while True:
            container.reload()
            state = container.attrs.get("State", {})
            if state.get("Status") in ("exited", "dead") or state.get("Restarting") or container.attrs.get("RestartCount", 0):
                reason = f"exited with code {state.get('ExitCode')} before it served"
                break
            if grpc_ready(port):
                log(f"{container.name} answers on port {port}")
                return
            if time.monotonic() > deadline:
                break
            time.sleep(self.docker.poll_interval_s)
        output = self._tail_logs(container)
        try:
            container.remove(force=True)
        except Exception:  # already gone: nothing left to clean
            pass
        raise UnhealthyError(
            f"the new version of {spec.name} ({container.name}) {reason}; it was removed and the previous "
            f"version, if any, keeps serving. Its last log lines:\n{output}"
        )

    def _tail_logs(self, container: Container) -> str:
        try:
            return images.tail(container.logs(tail=LOG_TAIL_LINES).decode(errors="replace").splitlines(), LOG_TAIL_LINES)
        except Exception:  # the container may already be gone
            return "(no logs: the container is gone)"

    def _served(self, spec: RepoSpec, container: Container, port: int, changed: bool) -> Served:
        return Served(
            endpoint=f"localhost:{port}",
            workspace_entry=workspace_entry(spec.name, port),
            changed=changed,
            metadata={"container": naming.container_name(spec.name), "container_id": container.id, "port": port},
        )

    def after_switch(self, spec: RepoSpec, served: Served, log: Log) -> None:
        """The workspace points at the new container: drain and remove the old one, then rename the new."""
        import docker

        live_name = naming.container_name(spec.name)
        keep = served.metadata.get("container_id")
        with self._lock(spec.name):
            for c in self._containers(spec.name):
                if c.id == keep:
                    continue
                self._drain(c, log)
                c.remove(force=True)
                log(f"removed the previous container {c.name} ({c.short_id})")
            try:
                new = self.client.containers.get(keep)
            except docker.errors.NotFound:
                return
            if new.name != live_name:
                new.rename(live_name)
                log(f"renamed {new.name} to {live_name}")

    def _drain(self, container: Container, log: Log) -> None:
        """Let runs that the old server started finish, up to the drain timeout; then stop it."""
        try:
            port = int(container.labels.get(LABEL_PORT, ""))
        except ValueError:
            port = None
        deadline = time.monotonic() + self.docker.drain_timeout_s
        runs = current_runs(port) if port and container.status == "running" else None
        if runs:
            log(f"{container.name} still executes run(s) {', '.join(runs)}; waiting up to {self.docker.drain_timeout_s:.0f}s")
        while runs and time.monotonic() < deadline:
            time.sleep(max(self.docker.poll_interval_s, 0.5))
            runs = current_runs(port)
        if runs:
            log(f"warning: stopping {container.name} with run(s) still executing: {', '.join(runs)}")
        try:
            container.stop(timeout=STOP_TIMEOUT_S)
        except Exception:  # already stopped
            pass

    # -- state -------------------------------------------------------------
    def is_serving(self, name: str, record: dict[str, Any]) -> bool:
        """The record's image runs as the live container on the record's port."""
        import docker

        try:
            c = self.client.containers.get(naming.container_name(name))
        except docker.errors.NotFound:
            return False
        entry = (record.get("workspace_entry") or {}).get("grpc_server") or {}
        return (
            c.status == "running"
            and c.labels.get(LABEL_IMAGE) == record.get("artifact")
            and c.labels.get(LABEL_CODE, "") == (record.get("code_sha256") or "")
            and str(entry.get("port")) == c.labels.get(LABEL_PORT)
        )

    def stop(self, name: str, purge: bool, log: Log) -> None:
        """Remove every container of the repo; with ``purge`` also its local images."""
        naming.validate_name(name)
        with self._lock(name):
            for c in self._containers(name):
                c.remove(force=True)
                log(f"removed container {c.name} ({c.short_id})")
        if purge:
            for image in self.client.images.list(filters={"label": f"{LABEL_REPO}={name}"}):
                try:
                    self.client.images.remove(image.id, force=True)
                    log(f"removed image {', '.join(image.tags) or image.short_id}")
                except Exception as exc:  # an image still used elsewhere is kept
                    log(f"kept image {image.short_id}: {exc}")

    def observe(self) -> dict[str, Observed]:
        """The repos' live containers (``dagster-repo-<name>``, else a ``-next`` left by a crash)."""
        found: dict[str, Observed] = {}
        for c in sorted(self._containers(), key=lambda c: c.name.endswith(NEXT_SUFFIX)):
            name = c.labels.get(LABEL_REPO, "")
            if naming.name_problem(name) or name in found:
                continue
            try:
                port = int(c.labels.get(LABEL_PORT, ""))
            except ValueError:
                continue
            health = (c.attrs.get("State", {}).get("Health") or {}).get("Status")
            found[name] = Observed(
                name=name,
                status=c.status + (f" ({health})" if health else ""),
                endpoint=f"localhost:{port}",
                commit=c.labels.get(LABEL_COMMIT),
                artifact=c.labels.get(LABEL_IMAGE),
                workspace_entry=workspace_entry(name, port),
                details={"container": c.name, "container_id": c.id, "digest": c.labels.get(LABEL_DIGEST, "")},
            )
        return found

    def logs(self, name: str, follow: bool, tail: int) -> Iterator[str]:
        """The code server's output; ``follow`` keeps streaming new lines."""
        import docker

        try:
            c = self.client.containers.get(naming.container_name(name))
        except docker.errors.NotFound:
            yield f"(no container {naming.container_name(name)}: {name} is not deployed on the docker platform)"
            return
        stream = c.logs(stream=True, follow=follow, tail=tail if tail else "all")
        partial = ""
        for chunk in stream:
            partial += chunk.decode(errors="replace")
            *lines, partial = partial.split("\n")
            yield from lines
        if partial:
            yield partial
