"""Code archives: the immutable, content-checked copy of a commit that mounted locations serve.

With dynamic repository mounting (``RepoSpec.code_mounting``; README "Images and the docker
platform") a location's image holds its dependencies only, and its code travels as
``repos/<name>/code/<commit>.tar.gz`` in the storage root:

- the archive is **deterministic**: the commit's tracked files, sorted, with fixed times,
  owners and modes, gzip without a timestamp, so one commit always gives the same bytes and the
  same sha256, whoever builds it;
- it is **written once**: S3 ``If-None-Match: *`` (the sha256 kept in the object's metadata),
  a local ``link`` of a finished temporary file (fails when the name exists). A deploy of a commit
  whose archive exists uploads nothing; one whose stored archive names another sha256 fails
  before anything serves;
- it sits **under the repo's own prefix**, so the per-repo IAM (ecs task role: ``repos/<name>/``)
  and the docker platform's mounts (only that repo's folder) keep it to that repo;
- the location's entry point checks its sha256 (given in the environment, computed here from the
  commit, never read back from storage) before it unpacks it: ``meta_deployer_runtime.code``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from meta_deployer.errors import PublishError
from meta_deployer.model import Checkout, Log
from meta_deployer.settings import Settings
from meta_deployer_runtime.contract import code_archive_key

#: The archive's metadata key holding its sha256 (S3 user metadata: ``x-amz-meta-sha256``).
SHA256_METADATA = "sha256"


@dataclass(frozen=True)
class CodeArchive:
    """One commit's code archive where the location reads it."""

    key: str  # repos/<name>/code/<commit>.tar.gz
    uri: str  # s3://<bucket>/<key>, or the absolute local path
    sha256: str
    size: int
    written: bool  # False when it existed already (nothing uploaded)

    def metadata(self) -> dict[str, str | int | bool]:
        """What the deployment record keeps of it."""
        return {"code_archive": self.uri, "code_sha256": self.sha256, "code_bytes": self.size}


def _files(root: Path) -> list[tuple[str, Path]]:
    from meta_deployer.platforms.images import tracked_files

    kept = []
    for rel in tracked_files(root):
        path = root / rel
        # A tracked link (checked to stay inside the checkout) is stored as the file it points at.
        if path.is_file():
            kept.append((rel, path))
    return kept


def make_archive(root: Path) -> bytes:
    """The deterministic tar.gz of the checkout's tracked files (see the module docstring)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in sorted(_files(root)):
            data = path.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _write_local_once(path: Path, data: bytes) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return False
    fd, tmp = tempfile.mkstemp(prefix=".code-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)  # fails when the name exists: a create, never an overwrite
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def publish_code(settings: Settings, checkout: Checkout, log: Log) -> CodeArchive:
    """Write the commit's code archive once to the storage root (S3 with a bucket, else the local folder)."""
    key = code_archive_key(checkout.name, checkout.commit)
    data = make_archive(checkout.path)
    sha = hashlib.sha256(data).hexdigest()
    bucket = settings.bucket if settings.platform == "ecs" else settings.storage_bucket
    if bucket:
        from meta_deployer.s3state import gateway_for

        gateway = gateway_for(settings)
        uri = f"s3://{bucket}/{key}"
        written = gateway.create_object(bucket, key, data, {SHA256_METADATA: sha})
        if not written:
            stored = (gateway.object_metadata(bucket, key) or {}).get(SHA256_METADATA)
            if stored != sha:
                raise PublishError(
                    f"{uri} exists but holds sha256 {stored or '(none recorded)'}, not {sha} (the archive of "
                    f"{checkout.short_commit}); archives are immutable: delete that object and deploy again"
                )
    else:
        path = settings.storage_dir / key
        uri = str(path)
        written = _write_local_once(path, data)
    log(
        f"code archive {uri} ({len(data)} bytes, sha256 {sha[:16]}…) "
        + ("written" if written else "already stored: nothing uploaded")
    )
    return CodeArchive(key=key, uri=uri, sha256=sha, size=len(data), written=written)
