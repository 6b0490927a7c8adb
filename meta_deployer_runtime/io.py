"""Per-repo storage isolation inside Dagster: the prefix-enforcing IO manager.

Every repo owns one prefix of the storage root (an S3 bucket, or a local
directory on the dev platform when no bucket is configured), with the same
layout on both::

    repos/<name>/assets/<asset key path>[/<partition>]          asset outputs
    repos/<name>/runs/<run_id>/<step>/<output>[/<mapping key>]   op outputs
    repos/<name>/logs/...                                        compute logs (meta_deployer_runtime.compute_logs)
    repos/shared/assets/<asset key path>                         readable by every repo, writable by none

:class:`RepoIOManager` builds on Dagster's own pickling IO managers
(dagster-aws ``PickledObjectS3IOManager`` for S3, Dagster's
``PickledObjectFilesystemIOManager`` for a local directory); it only replaces
how paths are computed. Every key is computed by :class:`RepoKeys`, which
refuses ``..``, absolute paths, empty segments, asset key parts containing
``/`` and hostile partition keys with a :class:`StorageIsolationError`,
before any storage call is made.

An input that belongs to another repo is declared with the metadata key
``meta_deployer/repo`` (see :func:`repo_asset`); it is read from that repo's
``assets/`` prefix only when the repo's spec grants ``access.read`` for it.

The platforms inject the settings as environment variables (see
``ENV_*``); :func:`repo_io_manager` reads them and :func:`inject_io_manager`
gives a repo's ``Definitions`` the enforcing IO manager when it sets none.

This module runs inside each repo's own environment (the location entry
point imports it), so it imports only Dagster and the standard library at
module level; dagster-aws and boto3 are imported only when a bucket is used.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from dagster import (
    ConfigurableIOManagerFactory,
    Definitions,
    InitResourceContext,
    InputContext,
    IOManager,
    MetadataValue,
    OutputContext,
)
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager
from pydantic import Field

from meta_deployer_runtime.contract import (
    ENV_BUCKET,
    ENV_PREFIX,
    ENV_READ_ACCESS,
    ENV_REPO,
    ENV_STORAGE_DIR,
    name_problem,
)
from meta_deployer_runtime.errors import SettingsError, StorageIsolationError

if TYPE_CHECKING:
    from dagster import AssetKey, AssetSpec
    from upath import UPath

# -- The layout ---------------------------------------------------------------
REPOS_ROOT = "repos"
SHARED_REPO = "shared"
ASSETS_DIR = "assets"
RUNS_DIR = "runs"
LOGS_DIR = "logs"
#: Metadata key naming the repo an asset belongs to (on an ``AssetSpec`` or an ``AssetIn``).
OWNER_METADATA_KEY = "meta_deployer/repo"
#: The resource key Dagster uses for the default IO manager.
IO_MANAGER_KEY = "io_manager"
#: Longest S3 object key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024

_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_READ_ACCESS_SEPARATOR = ","


def segment_problem(segment: object) -> str | None:
    """Why ``segment`` may not be one path segment of a storage key, or None."""
    if not isinstance(segment, str) or not segment:
        return "is empty"
    if segment in (".", ".."):
        return f"is {segment!r}, a relative path segment"
    if "/" in segment:
        return "contains '/'"
    if _FORBIDDEN_CHARS.search(segment):
        return "contains a backslash or a control character"
    return None


def repo_prefix(name: str) -> str:
    """The storage prefix of repo ``name``: ``repos/<name>`` (no trailing slash)."""
    return f"{REPOS_ROOT}/{name}"


@dataclass(frozen=True)
class RepoKeys:
    """The key mapping of one repo (pure): every key it returns lies under a prefix the repo may use.

    Writes go only under ``repos/<repo>/``; reads also under ``repos/<other>/assets/`` for
    each granted ``other``, and under ``repos/shared/assets/``.
    """

    repo: str
    read_access: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        problem = name_problem(self.repo)
        if problem:
            raise StorageIsolationError(f"IO manager: repo name {problem}")
        for other in self.read_access:
            problem = name_problem(other) if other != SHARED_REPO else None
            if problem:
                raise StorageIsolationError(f"IO manager: read access entry: repo name {problem}")

    @property
    def prefix(self) -> str:
        """This repo's prefix, ``repos/<repo>``."""
        return repo_prefix(self.repo)

    def can_read(self, owner: str) -> bool:
        """Whether this repo may read the assets of ``owner``."""
        return owner in (self.repo, SHARED_REPO) or owner in self.read_access

    def asset_key(self, key_path: Sequence[str], owner: str | None = None, *, write: bool) -> str:
        """The key of an asset: ``repos/<owner>/assets/<key path>``.

        ``owner`` is the repo the asset belongs to (default: this repo). Writing to any
        other repo, ``shared`` included, is refused; reading needs a grant.
        """
        owner = self.repo if owner is None else owner
        what = f"asset {list(key_path)!r}"
        if owner != self.repo:
            if write:
                raise StorageIsolationError(
                    f"{what}: repo {self.repo!r} may write only under {self.prefix}/, "
                    f"not under {repo_prefix(owner)}/ (metadata {OWNER_METADATA_KEY}={owner!r})"
                )
            if owner != SHARED_REPO and name_problem(owner):
                raise StorageIsolationError(
                    f"{what}: metadata {OWNER_METADATA_KEY}={owner!r}: repo name {name_problem(owner)}"
                )
            if not self.can_read(owner):
                raise StorageIsolationError(
                    f"{what}: repo {self.repo!r} may not read the assets of repo {owner!r}; "
                    f"grant it in repos/{self.repo}/config.yml with 'access: {{read: [{owner}]}}'"
                )
        if not key_path:
            raise StorageIsolationError(f"{what}: an asset key needs at least one part")
        for part in key_path:
            problem = segment_problem(part)
            if problem:
                raise StorageIsolationError(f"{what}: key part {part!r} {problem}; it would leave {repo_prefix(owner)}/")
        return self._checked("/".join((repo_prefix(owner), ASSETS_DIR, *key_path)), owner, what)

    def partition_segments(self, partition: str, what: str = "partition") -> tuple[str, ...]:
        """The path segments of a partition key ('/' nests); hostile keys are refused."""
        if not isinstance(partition, str) or not partition:
            raise StorageIsolationError(f"{what} key {partition!r} is empty")
        if partition.startswith("/"):
            raise StorageIsolationError(f"{what} key {partition!r} is an absolute path")
        segments = tuple(partition.split("/"))
        for segment in segments:
            problem = segment_problem(segment)
            if problem:
                raise StorageIsolationError(f"{what} key {partition!r}: segment {segment!r} {problem}")
        return segments

    def partition_key(self, asset_key: str, partition: str) -> str:
        """The key of one partition of the asset stored at ``asset_key``."""
        owner = self._owner_of(asset_key)
        key = "/".join((asset_key, *self.partition_segments(partition, f"{asset_key}: partition")))
        return self._checked(key, owner, asset_key)

    def op_output_key(self, identifier: Sequence[str]) -> str:
        """The key of an op output: ``repos/<repo>/runs/<run_id>/<step>/<output>[/<mapping key>]``.

        ``identifier`` is Dagster's ``context.get_identifier()``. Brackets of dynamic step
        keys are rewritten the way dagster-aws does (``op[k]`` -> ``op--k``).
        """
        parts = [str(p).replace("[", "--").replace("]", "") for p in identifier]
        what = f"op output {list(identifier)!r}"
        for part in parts:
            problem = segment_problem(part)
            if problem:
                raise StorageIsolationError(f"{what}: {part!r} {problem}; it would leave {self.prefix}/")
        return self._checked("/".join((self.prefix, RUNS_DIR, *parts)), self.repo, what)

    def _owner_of(self, key: str) -> str:
        root, _, rest = key.partition("/")
        owner = rest.partition("/")[0]
        if root != REPOS_ROOT or not self.can_read(owner):
            raise StorageIsolationError(f"{key!r} is not a key this repo ({self.repo!r}) may use")
        return owner

    def _checked(self, key: str, owner: str, what: str) -> str:
        # Belt and braces: each segment was checked above; the whole key must still be
        # normalised and inside the owner's prefix.
        if posixpath.normpath(key) != key or not key.startswith(repo_prefix(owner) + "/"):
            raise StorageIsolationError(f"{what}: key {key!r} would leave {repo_prefix(owner)}/")
        if len(key.encode()) > MAX_KEY_BYTES:
            raise StorageIsolationError(f"{what}: key is longer than {MAX_KEY_BYTES} bytes: {key[:80]}...")
        return key


def _metadata_text(value: object) -> str | None:
    if isinstance(value, MetadataValue):
        value = value.value
    return None if value is None else str(value)


def declared_owner(context: InputContext | OutputContext) -> str | None:
    """The repo an asset belongs to, from ``meta_deployer/repo`` metadata, or None (this repo).

    An input's own metadata (``AssetIn(metadata=...)``) wins over the upstream asset's.
    """
    owner = _metadata_text((context.definition_metadata or {}).get(OWNER_METADATA_KEY))
    if owner is None and isinstance(context, InputContext) and context.has_asset_key:
        upstream = context.upstream_output
        if upstream is not None:
            owner = _metadata_text((upstream.definition_metadata or {}).get(OWNER_METADATA_KEY))
    return owner


class _RepoPaths:
    """Mixin for Dagster's ``UPathIOManager`` stores: compute every path with :class:`RepoKeys`.

    The store's base path is the storage root (the bucket root or the local directory).
    """

    keys: RepoKeys

    def get_asset_relative_path(self, context: InputContext | OutputContext) -> "UPath":
        from upath import UPath

        write = isinstance(context, OutputContext)
        return UPath(self.keys.asset_key(context.asset_key.path, declared_owner(context), write=write))

    def get_op_output_relative_path(self, context: InputContext | OutputContext) -> "UPath":
        from upath import UPath

        return UPath(self.keys.op_output_key(context.get_identifier()))

    def get_path_for_partition(self, context: InputContext | OutputContext, path: "UPath", partition: str) -> "UPath":
        # The same checks as the pure mapping (segments, prefix, key length), then the
        # partition's segments joined onto the asset's path.
        asset_key = self.get_asset_relative_path(context).as_posix()
        key = self.keys.partition_key(asset_key, partition)
        return path.joinpath(*key[len(asset_key) + 1 :].split("/"))

    def make_safe_partition_path(self, base_path: "UPath", partition: str) -> "UPath":
        return base_path.joinpath(*self.keys.partition_segments(partition))


class RepoLocalStore(_RepoPaths, PickledObjectFilesystemIOManager):
    """Pickled objects in a local directory, at ``<storage_dir>/repos/<name>/...``."""

    def __init__(self, keys: RepoKeys, storage_dir: str):
        self.keys = keys
        super().__init__(base_dir=storage_dir)


@lru_cache(maxsize=1)
def _s3_store_class() -> type:
    """Build the S3 store class on first use, so that dagster-aws is imported only when needed."""
    try:
        from dagster_aws.s3.io_manager import PickledObjectS3IOManager
    except ImportError as exc:
        raise SettingsError(
            f"{ENV_BUCKET} is set but dagster-aws is not installed in this environment; "
            "add 'dagster-aws' to the repo's requirements, or unset the bucket to store locally"
        ) from exc
    from upath import UPath

    class RepoS3Store(_RepoPaths, PickledObjectS3IOManager):
        """Pickled objects in S3 (dagster-aws), at ``s3://<bucket>/repos/<name>/...``."""

        def __init__(self, keys: RepoKeys, bucket: str, s3_client: Any):
            self.keys = keys
            # dagster-aws lists its prefix once at start-up; keep that call inside the
            # repo's own prefix so that a task role scoped to it is enough.
            super().__init__(s3_bucket=bucket, s3_session=s3_client, s3_prefix=f"{keys.prefix}/")
            # Paths are computed from the bucket root by RepoKeys (they may name a
            # granted repo's assets), so the base is the root, not the own prefix.
            self._base_path = UPath(".")

        # A task role may list the bucket only under its own prefixes (an s3:prefix condition),
        # and S3 then answers a GetObject/HeadObject of a missing key with 403, not 404
        # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, "Permissions").
        # dagster-aws treats only NoSuchKey as absent, so the first write of every asset would
        # fail on real S3. Existence is asked with ListObjectsV2 and the key as the prefix:
        # the role's conditional grant allows it, and it tells "absent" from "denied".
        def path_exists(self, path: "UPath") -> bool:
            return self._exists(path.as_posix())

        def _exists(self, key: str) -> bool:
            listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
            return any(obj.get("Key") == key for obj in listed.get("Contents", []))

        def load_from_path(self, context: InputContext, path: "UPath") -> Any:
            from botocore.exceptions import ClientError

            try:
                return super().load_from_path(context, path)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("AccessDenied", "403") and not self._exists(path.as_posix()):
                    raise FileNotFoundError(f"Could not find file {path} in S3 bucket {self.bucket}") from None
                raise

    return RepoS3Store


class RepoIOManager(ConfigurableIOManagerFactory):
    """The prefix-enforcing IO manager: each repo reads and writes only its own storage prefix.

    Asset outputs go to ``repos/<repo_name>/assets/<asset key path>[/<partition>]`` and op
    outputs to ``repos/<repo_name>/runs/<run_id>/<step>/<output>``, in S3 when ``bucket`` is
    set, else under the local ``storage_dir`` with the same layout. Inputs that belong to
    another repo (metadata ``meta_deployer/repo``) are read from that repo's ``assets/``
    when ``read_access`` grants it; ``repos/shared/assets/`` is always readable and never
    writable. Objects are pickled, as by Dagster's own filesystem and S3 IO managers.

    Use :func:`repo_io_manager` to build one from the environment the platforms inject.
    """

    repo_name: str = Field(description="The repo (code location) name; every write lies under repos/<repo_name>/.")
    bucket: str | None = Field(
        default=None,
        description="S3 bucket holding repos/<repo_name>/...; when set, S3 is used (AWS_ENDPOINT_URL is honoured).",
    )
    base_prefix: str | None = Field(
        default=None,
        description="The repo's own prefix, repos/<repo_name>; when given it must equal that (guards against mixed-up settings).",
    )
    storage_dir: str | None = Field(
        default=None,
        description="Local directory holding repos/<repo_name>/...; used when no bucket is set.",
    )
    read_access: list[str] = Field(
        default=[],
        description="Repos whose assets this repo may read (the spec's access.read); 'shared' is always readable.",
    )

    def key_mapping(self) -> RepoKeys:
        """The validated key mapping for these settings."""
        keys = RepoKeys(self.repo_name, frozenset(self.read_access))
        if self.base_prefix is not None and self.base_prefix.rstrip("/") != keys.prefix:
            raise StorageIsolationError(
                f"IO manager: base_prefix {self.base_prefix!r} is not the repo's own prefix {keys.prefix!r}"
            )
        return keys

    def create_io_manager(self, context: InitResourceContext) -> IOManager:
        """Create the store: S3 when a bucket is set, else the local directory."""
        keys = self.key_mapping()
        if self.bucket:
            from dagster_aws.s3 import S3Resource

            return _s3_store_class()(keys, self.bucket, S3Resource().get_client())
        if not self.storage_dir:
            raise SettingsError(
                f"IO manager for repo {self.repo_name!r}: set a bucket ({ENV_BUCKET}) or a storage directory ({ENV_STORAGE_DIR})"
            )
        return RepoLocalStore(keys, os.path.abspath(self.storage_dir))


def read_access_from_env(value: str | None) -> list[str]:
    """Parse ``META_DEPLOYER_READ_ACCESS`` (comma-separated names) into a sorted list."""
    return sorted({n.strip() for n in (value or "").split(_READ_ACCESS_SEPARATOR) if n.strip()})


def repo_io_manager(env: Mapping[str, str] | None = None) -> RepoIOManager:
    """Build the enforcing IO manager from the injected environment (default ``os.environ``).

    Reads ``META_DEPLOYER_REPO``, ``META_DEPLOYER_PREFIX``, ``META_DEPLOYER_BUCKET``,
    ``META_DEPLOYER_STORAGE_DIR`` and ``META_DEPLOYER_READ_ACCESS``. Settings are checked
    here, so a location with bad settings fails to load with a clear message.
    """
    env = os.environ if env is None else env
    name = env.get(ENV_REPO)
    if not name:
        raise SettingsError(
            f"{ENV_REPO} is not set: the repo IO manager needs the settings meta_deployer injects "
            f"({ENV_REPO}, {ENV_PREFIX}, {ENV_BUCKET} or {ENV_STORAGE_DIR}, {ENV_READ_ACCESS})"
        )
    bucket = env.get(ENV_BUCKET) or None
    storage_dir = env.get(ENV_STORAGE_DIR) or None
    if not bucket and not storage_dir:
        raise SettingsError(f"repo {name!r}: set {ENV_BUCKET} (S3) or {ENV_STORAGE_DIR} (a local directory)")
    manager = RepoIOManager(
        repo_name=name,
        bucket=bucket,
        base_prefix=env.get(ENV_PREFIX) or None,
        storage_dir=os.path.abspath(storage_dir) if storage_dir else None,
        read_access=read_access_from_env(env.get(ENV_READ_ACCESS)),
    )
    manager.key_mapping()  # fail now, at load time, on a bad name, prefix or grant
    return manager


def inject_io_manager(defs: Definitions, env: Mapping[str, str] | None = None) -> Definitions:
    """Give ``defs`` the enforcing IO manager when it sets no ``io_manager`` of its own.

    A repo that sets its own keeps it unchanged (and may opt in with :class:`RepoIOManager`).
    """
    if IO_MANAGER_KEY in (defs.resources or {}):
        return defs
    return defs.with_resources({IO_MANAGER_KEY: repo_io_manager(env)})


def inject_into_target(target: Any, env: Mapping[str, str] | None = None) -> Any:
    """Inject the enforcing IO manager into any loadable target Dagster's autodiscovery returns.

    - ``Definitions``: :func:`inject_io_manager`;
    - a ``@dg.definitions`` function (``LazyDefinitions``, what ``dg`` projects use): wrapped,
      so the ``Definitions`` it returns when Dagster calls it are injected;
    - a list of assets (a module with only ``@asset`` functions): made a ``Definitions``;
    - anything else (a ``RepositoryDefinition``, a single job or graph): returned unchanged;
      such a location keeps Dagster's default IO manager.
    """
    from dagster.components.definitions import LazyDefinitions

    if isinstance(target, Definitions):
        return inject_io_manager(target, env)
    if isinstance(target, LazyDefinitions):
        load_fn = target.load_fn

        def load_injected(*args: Any) -> Any:
            loaded = load_fn(*args)
            return inject_io_manager(loaded, env) if isinstance(loaded, Definitions) else loaded

        return LazyDefinitions(load_fn=load_injected, has_context_arg=target.has_context_arg)
    if isinstance(target, (list, tuple)) and target and all(_is_asset_like(t) for t in target):
        return inject_io_manager(Definitions(assets=list(target)), env)
    return target


def _is_asset_like(obj: object) -> bool:
    from dagster import AssetsDefinition, AssetSpec, SourceAsset

    return isinstance(obj, (AssetsDefinition, AssetSpec, SourceAsset))


def repo_asset(repo: str, key: "str | Sequence[str] | AssetKey", **kwargs: Any) -> "AssetSpec":
    """An ``AssetSpec`` for an asset of another repo (or ``shared``), to use as an input.

    Its metadata names the owning repo, so the IO manager reads it from
    ``repos/<repo>/assets/<key>``; this repo's spec must grant ``access.read`` for it.
    """
    from dagster import AssetSpec

    metadata = {**kwargs.pop("metadata", {}), OWNER_METADATA_KEY: repo}
    return AssetSpec(key, metadata=metadata, **kwargs)
