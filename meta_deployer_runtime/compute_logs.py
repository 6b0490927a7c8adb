"""Per-repo compute logs: an instance-wide compute log manager that routes by code location.

Dagster has one compute log manager per instance, and its log keys name a run
(``[run_id, "compute_logs", <step>]``) but not the run's code location. The
manager here looks the run up once, reads the location from its
``remote_job_origin``, and stores the logs under that repo's prefix, with
the same layout in S3 and in a local directory::

    repos/<name>/logs/<run_id>/compute_logs/<step>.{out,err}   runs of repo <name>'s location
    system/logs/<log key>                                      everything else

"Everything else" is the ``meta_deployer`` location's own runs, runs without a
remote origin (``dagster job execute``, in-process runs), locations whose name
is not a repo name, and keys that name no run (sensor and schedule ticks,
backfills). Logs of one repo are therefore never written under another's
prefix: a key lands under ``repos/<name>/`` only when the run's location is
``<name>``.

Configure :class:`RepoComputeLogManager` in ``dagster.yaml``. It stores in S3
(dagster-aws ``S3ComputeLogManager``) when a bucket is configured, else in a
local directory (Dagster's ``LocalComputeLogManager``). This module is loaded
by every process that opens the instance, run workers in a repo's own
environment included, so it imports only Dagster and the standard library at
module level.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from dagster import Field, Float, StringSource
from dagster._config.config_type import Noneable
from dagster._core.storage.compute_log_manager import ComputeIOType
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._serdes import ConfigurableClassData

from meta_deployer_runtime.contract import ENV_BUCKET, ENV_STORAGE_DIR, SELF_LOCATION, default_storage_dir, name_problem
from meta_deployer_runtime.errors import SettingsError, StorageIsolationError
from meta_deployer_runtime.io import LOGS_DIR, REPOS_ROOT, segment_problem

#: Prefix for logs that belong to no repo (the deployer's own runs, ticks, backfills).
SYSTEM_LOGS_PREFIX: tuple[str, ...] = ("system", "logs")
#: Dagster run ids are UUIDs; other first key parts (``backfill``, a repository name) are not runs.
RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
#: Cap on the run -> prefix cache of one manager.
MAX_CACHED_RUNS = 10_000


def logs_prefix_for_location(location_name: str | None) -> tuple[str, ...]:
    """Where the logs of a run of ``location_name`` go (pure).

    ``repos/<name>/logs`` for a location named like a repo, else ``system/logs``
    (the ``meta_deployer`` location, no location, or a name that is no repo name).
    """
    if location_name and location_name != SELF_LOCATION and name_problem(location_name) is None:
        return (REPOS_ROOT, location_name, LOGS_DIR)
    return SYSTEM_LOGS_PREFIX


class _RoutesByLocation:
    """Mixin: turn a Dagster log key into a key under the owning repo's ``logs/`` prefix.

    Needs the instance (``MayHaveInstanceWeakref``) to look runs up; the result is cached
    per run, since a run's location never changes.
    """

    _run_prefixes: dict[str, tuple[str, ...]]

    def location_prefix(self, first_part: str | None) -> tuple[str, ...]:
        """The prefix for keys whose first part is ``first_part`` (a run id or anything else)."""
        if not first_part or not RUN_ID_PATTERN.match(first_part):
            return SYSTEM_LOGS_PREFIX
        cache = self.__dict__.setdefault("_run_prefixes", {})
        if first_part in cache:
            return cache[first_part]
        run = self._instance.get_run_by_id(first_part) if self.has_instance else None  # type: ignore[attr-defined]
        if run is None:
            return SYSTEM_LOGS_PREFIX  # not (yet) a run: do not cache
        origin = run.remote_job_origin
        prefix = logs_prefix_for_location(origin.location_name if origin is not None else None)
        if len(cache) >= MAX_CACHED_RUNS:
            cache.clear()
        cache[first_part] = prefix
        return prefix

    def routed_key(self, log_key: Sequence[str]) -> list[str]:
        """``log_key`` under its owner's prefix; a key that could leave it is refused."""
        for part in log_key:
            problem = segment_problem(part)
            if problem:
                raise StorageIsolationError(f"compute log key {list(log_key)!r}: part {part!r} {problem}")
        return [*self.location_prefix(log_key[0] if log_key else None), *log_key]


class LocalRepoComputeLogManager(_RoutesByLocation, LocalComputeLogManager):
    """Dagster's ``LocalComputeLogManager``, storing each run's logs under its repo's prefix.

    Files live at ``<base_dir>/repos/<name>/logs/<run_id>/compute_logs/<step>.{out,err}``
    (``<base_dir>/system/logs/...`` for logs of no repo).
    """

    def get_captured_local_path(self, log_key: Sequence[str], extension: str, partial: bool = False) -> str:
        """The local file of ``log_key``, under its owner's prefix.

        A repo's code writes its own ``logs/`` folder (its container mounts it), so it can plant a
        symbolic link there. Dagster resolves the path and checks only that it stays under the whole
        storage root: a link to another repo's file would pass, and the webserver would show that
        file as this repo's logs. So the resolved path must stay under the owner's own prefix.
        """
        prefix = self.location_prefix(log_key[0] if log_key else None)
        path = super().get_captured_local_path(self.routed_key(log_key), extension, partial=partial)
        owner_root = Path(self._base_dir).resolve().joinpath(*prefix)
        if owner_root not in Path(path).parents:
            raise StorageIsolationError(
                f"compute log {list(log_key)!r} resolves to {path}, outside {owner_root}: a symbolic link in the "
                "repo's log folder points elsewhere; it is not followed"
            )
        return path

    def delete_logs(self, log_key: Sequence[str] | None = None, prefix: Sequence[str] | None = None) -> None:
        """Delete one capture (``log_key``) or all captures under ``prefix``, in its owner's prefix."""
        if log_key:
            super().delete_logs(log_key=log_key)  # paths come from get_captured_local_path
        else:
            super().delete_logs(prefix=self.routed_key(prefix) if prefix else prefix)

    def get_log_keys_for_log_key_prefix(
        self, log_key_prefix: Sequence[str], io_type: ComputeIOType
    ) -> Sequence[list[str]]:
        """The log keys (as Dagster knows them) captured under ``log_key_prefix``."""
        routed = self.routed_key(log_key_prefix)
        keys = super().get_log_keys_for_log_key_prefix(routed, io_type)
        return [list(log_key_prefix) + key[len(routed) :] for key in keys]


@lru_cache(maxsize=1)
def _s3_manager_class() -> type:
    """Build the S3 variant on first use, so that dagster-aws is imported only when needed."""
    try:
        from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    except ImportError as exc:
        raise SettingsError(
            f"compute logs: {ENV_BUCKET} is set but dagster-aws is not installed in this environment"
        ) from exc

    class S3RepoComputeLogManager(_RoutesByLocation, S3ComputeLogManager):
        """dagster-aws ``S3ComputeLogManager``, storing each run's logs under its repo's prefix.

        Objects live at ``s3://<bucket>/repos/<name>/logs/<run_id>/compute_logs/<step>.{out,err}``.
        Logs are staged in ``local_dir`` while captured, as in dagster-aws.
        """

        def __init__(self, bucket: str, local_dir: str | None = None, inst_data: Any = None, **kwargs: Any):
            super().__init__(bucket=bucket, local_dir=local_dir, inst_data=inst_data, prefix="", **kwargs)

        def _resolve_path_for_namespace(self, namespace: Sequence[str]) -> list[str]:
            # The one hook dagster-aws builds every object key from (dagster-aws 0.29.x).
            return self.routed_key(namespace)

        def delete_logs(self, log_key: Sequence[str] | None = None, prefix: Sequence[str] | None = None) -> None:
            if log_key or not prefix:
                return super().delete_logs(log_key=log_key, prefix=prefix)
            self.local_manager.delete_logs(prefix=prefix)
            # dagster-aws builds this listing prefix itself (outside the hook above); route it.
            listing = "/".join([*self.routed_key(prefix), ""])
            found = self._s3_session.list_objects_v2(Bucket=self._s3_bucket, Prefix=listing)
            keys = [{"Key": obj["Key"]} for obj in found.get("Contents", [])]
            if keys:
                self._s3_session.delete_objects(Bucket=self._s3_bucket, Delete={"Objects": keys})

    return S3RepoComputeLogManager


class RepoComputeLogManager(LocalRepoComputeLogManager):
    """The ``dagster.yaml`` entry point: per-repo compute logs in S3 or in a local directory.

    With a ``bucket`` (config, else ``META_DEPLOYER_BUCKET``) it builds the S3 variant;
    otherwise the local one under ``storage_dir`` (config, else
    ``META_DEPLOYER_STORAGE_DIR``, else the deployer's default
    ``.meta_deployer/storage``). Both use the layout described in this module.
    """

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        """Config accepted in ``dagster.yaml`` under ``compute_logs.config``."""
        return {
            "bucket": Field(
                StringSource,
                is_required=False,
                description=f"S3 bucket for the logs; default ${ENV_BUCKET}. When set, logs go to S3.",
            ),
            "storage_dir": Field(
                StringSource,
                is_required=False,
                description=f"Local storage root holding repos/ and system/; default ${ENV_STORAGE_DIR}, "
                "else .meta_deployer/storage under META_DEPLOYER_ROOT.",
            ),
            "local_dir": Field(
                StringSource,
                is_required=False,
                description="S3 only: local directory where logs are staged while captured (default: a temp dir).",
            ),
            "upload_interval": Field(
                Noneable(int),
                is_required=False,
                default_value=None,
                description="S3 only: seconds between uploads of partial logs (default: upload when complete).",
            ),
            "polling_timeout": Field(
                Float, is_required=False, description="Local only: seconds between checks for new log lines."
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]) -> Any:
        """Build the S3 or the local variant from config and the environment."""
        bucket = config_value.get("bucket") or os.environ.get(ENV_BUCKET)
        if bucket:
            return _s3_manager_class()(
                bucket=bucket,
                local_dir=config_value.get("local_dir"),
                inst_data=inst_data,
                upload_interval=config_value.get("upload_interval"),
            )
        return LocalRepoComputeLogManager(
            base_dir=_storage_dir(config_value.get("storage_dir")),
            polling_timeout=config_value.get("polling_timeout"),
            inst_data=inst_data,
        )


def _storage_dir(configured: str | None) -> str:
    return os.path.abspath(configured) if configured else default_storage_dir()
