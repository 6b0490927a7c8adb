"""Mounted code: fetch a commit's code archive, check its sha256, unpack it (stdlib; boto3 only for S3).

With dynamic repository mounting a location's image holds only its dependencies; the code
travels as an immutable archive of the commit's tracked files,
``repos/<name>/code/<commit>.tar.gz`` in the storage root. The platform names it in
``META_DEPLOYER_CODE_ARCHIVE`` (``s3://<bucket>/<key>``, or an absolute local path) with its
sha256 in ``META_DEPLOYER_CODE_SHA256``; at start-up the entry point calls :func:`fetch_code`,
which

1. reads the archive (S3 through boto3, which dagster-aws brings into the image; imported
   only then, so the runtime still imports nothing but Dagster and the standard library);
2. refuses it when its sha256 is not the one given (:class:`CodeArchiveError`, naming both):
   an archive changed after it was written never runs;
3. unpacks it, regular files and folders only and nothing outside the target, into
   ``<META_DEPLOYER_CODE_DIR>/<sha256>`` (a temporary folder renamed into place, so a
   second process of the same version, such as a run worker, reuses it).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

from meta_deployer_runtime.contract import ENV_CODE_ARCHIVE, ENV_CODE_DIR, ENV_CODE_SHA256
from meta_deployer_runtime.errors import LocationError

#: At most this many bytes are read from an archive (and unpacked from it).
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024
_DONE = ".meta-deployer-complete"


class CodeArchiveError(LocationError):
    """The code archive is missing, does not match its checksum, or is not a safe tar.gz."""


def _read(uri: str) -> bytes:
    if uri.startswith("s3://"):
        import boto3  # brought by dagster-aws; only when the archive is in S3

        bucket, _, key = uri[len("s3://"):].partition("/")
        try:
            body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
            return body.read(MAX_ARCHIVE_BYTES + 1)
        except Exception as exc:  # botocore's ClientError and connection errors alike
            raise CodeArchiveError(f"cannot read the code archive {uri}: {exc}") from exc
    if not os.path.isabs(uri):
        raise CodeArchiveError(f"{ENV_CODE_ARCHIVE} must be s3://<bucket>/<key> or an absolute path, got {uri!r}")
    try:
        with open(uri, "rb") as f:
            return f.read(MAX_ARCHIVE_BYTES + 1)
    except OSError as exc:
        raise CodeArchiveError(f"cannot read the code archive {uri}: {exc.strerror or exc}") from exc


def _unpack(data: bytes, target: Path) -> None:
    target.mkdir(parents=True)
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            name = posixpath.normpath(member.name)
            if name.startswith(("/", "../")) or name == ".." or not (member.isfile() or member.isdir()):
                raise CodeArchiveError(f"the code archive holds {member.name!r}, which is not a plain file or folder inside it")
            path = target / name
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            total += member.size
            if total > MAX_ARCHIVE_BYTES:
                raise CodeArchiveError(f"the code archive unpacks to more than {MAX_ARCHIVE_BYTES} bytes")
            path.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with source, open(path, "wb") as out:
                shutil.copyfileobj(source, out)
            os.chmod(path, 0o755 if member.mode & 0o111 else 0o644)


def fetch_code(env: Mapping[str, str] | None = None) -> Path:
    """The folder holding the verified, unpacked code named by the environment (see the module docstring)."""
    env = os.environ if env is None else env
    uri, expected = env.get(ENV_CODE_ARCHIVE, ""), env.get(ENV_CODE_SHA256, "").lower()
    if not uri or len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise CodeArchiveError(f"mounted code needs {ENV_CODE_ARCHIVE} and a sha256 (64 hex digits) in {ENV_CODE_SHA256}")
    base = Path(env.get(ENV_CODE_DIR) or os.path.join(tempfile.gettempdir(), "meta-deployer-code"))
    target = base / expected
    if (target / _DONE).is_file():
        return target
    data = _read(uri)
    if len(data) > MAX_ARCHIVE_BYTES:
        raise CodeArchiveError(f"the code archive {uri} is larger than {MAX_ARCHIVE_BYTES} bytes")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CodeArchiveError(
            f"the code archive {uri} does not match its checksum: expected sha256 {expected}, got {actual}. "
            "It was changed after the deployer wrote it, so this version does not start; deploy the commit again "
            "after removing the archive (the deployer writes it anew)"
        )
    base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=base))
    try:
        _unpack(data, scratch / "code")
        (scratch / "code" / _DONE).write_text(expected + "\n")
        try:
            os.rename(scratch / "code", target)
        except OSError:
            if not (target / _DONE).is_file():  # another process of this version won the rename: reuse its copy
                raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CodeArchiveError(f"cannot unpack the code archive {uri}: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
