"""State that every task sees: deployment records and deploy leases as objects in the storage bucket.

    s3://<bucket>/system/deployments/<name>.json   the record (meta_deployer.state.RecordStore)
    s3://<bucket>/system/leases/<name>.json        the deploy lease (meta_deployer.lease.DeployLeases)

Where deploy runs start on other machines (an ECS task per run, several
containers), a local file and a ``flock`` are seen by one machine only. Both
stores here write with S3 **conditional writes** only, so that two writers
cannot both win (AWS: https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
and .../conditional-deletes.html; the codes are in ``gateway.CONDITION_*``):

- create: ``PutObject`` with ``If-None-Match: *`` (412 when the key exists);
- update: ``PutObject`` with ``If-Match: <ETag read>`` (412 when it changed since);
- delete: ``DeleteObject`` with ``If-Match: <ETag read>``;
- a 409 ``ConditionalRequestConflict`` (two conditional requests at once) is sent again, then is a conflict.

A write that finds the condition false re-reads: when the stored bytes are
already ours (a retried request whose first attempt landed) it is a success,
else the caller is told who won (:class:`RecordConflict`) or keeps waiting (a lease).

**The lease** holds ``owner`` (run id, host, pid), ``token`` (unique per
acquisition), ``acquired_at``, ``renewed_at``, ``expires_at`` and ``ttl_s``.
Acquire is a conditional create. A holder renews it every ``ttl/3`` from a
heartbeat thread (``If-Match`` its last ETag); release stops the thread and
deletes the object ``If-Match`` its last ETag, so a process whose lease was
taken over deletes nothing. A waiter logs who holds the lease and polls; it
takes the lease over (``If-Match`` the ETag it saw) once it is expired: its
``expires_at`` is past, or the waiter has seen the same ETag, never renewed,
for a whole ``ttl_s`` on its own monotonic clock (so a skewed clock on either
side delays a takeover by at most one ttl and never makes it early). A holder
whose renewal finds the lease taken stops, and its deploy fails before it
switches (``ensure_held``). Waiting is bounded (``LeaseTimeout``).

Names are checked (``naming.validate_name``) before they become keys; records
hold the redacted git URL and never a secret.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from meta_deployer import naming
from meta_deployer.errors import AwsOperationError, WriteConflict
from meta_deployer.lease import DEFAULT_LEASE_TIMEOUT_S, LeaseLost, LeaseTimeout
from meta_deployer.model import Log
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.settings import DEFAULT_LEASE_TTL_S, Settings
from meta_deployer.state import (
    CURRENT,
    MAX_RECORD_BYTES,
    CorruptRecord,
    Deployment,
    RecordConflict,
    Versioned,
    conflict_message,
    corrupt_message,
    parse_record,
)

RECORDS_PREFIX = "system/deployments/"
LEASES_PREFIX = "system/leases/"
#: A lease object is a few hundred bytes; more is not one of ours (and is taken over once expired).
MAX_LEASE_BYTES = 64 * 1024
#: The environment variable Dagster sets for the run a process executes, if any (owner.run_id).
RUN_ID_ENV = "DAGSTER_RUN_ID"


def gateway_for(settings: Settings) -> AwsGateway:
    """An AWS gateway for the state objects (the ecs platform's retry settings; ``AWS_ENDPOINT_URL`` applies)."""
    return AwsGateway(retry_mode=settings.ecs.retry_mode, max_attempts=settings.ecs.max_attempts)


def record_key(name: str) -> str:
    """``system/deployments/<name>.json`` for a valid repo name (SpecError otherwise)."""
    return f"{RECORDS_PREFIX}{naming.validate_name(name)}.json"


def lease_key(name: str) -> str:
    """``system/leases/<name>.json`` for a valid repo name (SpecError otherwise)."""
    return f"{LEASES_PREFIX}{naming.validate_name(name)}.json"


class S3Records:
    """The shared :class:`~meta_deployer.state.RecordStore`: one object per repo in the bucket."""

    def __init__(self, gateway: AwsGateway, bucket: str):
        self.gateway = gateway
        self.bucket = bucket

    def where(self, name: str) -> str:
        return f"s3://{self.bucket}/{record_key(name)}"

    def _raw(self, name: str) -> tuple[bytes, str] | None:
        return self.gateway.get_object(self.bucket, record_key(name), MAX_RECORD_BYTES)

    def read(self, name: str) -> Versioned:
        """``name``'s record with its ETag; a corrupt one reads as ``(None, etag)``."""
        found = self._raw(name)
        if found is None:
            return Versioned(None, None)
        raw, etag = found
        try:
            return Versioned(parse_record(raw, name), etag)
        except CorruptRecord:
            return Versioned(None, etag)

    def get(self, name: str) -> Deployment | None:
        """The record of ``name``; None when there is none or it is corrupt."""
        return self.read(name).record

    def _names(self) -> list[str]:
        names = []
        for key in self.gateway.list_keys(self.bucket, RECORDS_PREFIX):
            stem = key[len(RECORDS_PREFIX) :]
            if stem.endswith(".json") and naming.name_problem(stem[:-5]) is None:
                names.append(stem[:-5])
        return names

    def _each(self) -> list[tuple[str, Deployment | CorruptRecord]]:
        out: list[tuple[str, Deployment | CorruptRecord]] = []
        for name in self._names():
            found = self._raw(name)
            if found is None:
                continue  # deleted since the listing
            try:
                out.append((name, parse_record(found[0], name)))
            except CorruptRecord as exc:
                out.append((name, exc))
        return out

    def scan(self) -> tuple[dict[str, Deployment], dict[str, str]]:
        """``(all(), corrupt())`` from one listing and one read per record."""
        records, corrupt = {}, {}
        for name, r in self._each():
            if isinstance(r, Deployment):
                records[name] = r
            else:
                corrupt[name] = corrupt_message(self.where(name), name, r)
        return records, corrupt

    def all(self) -> dict[str, Deployment]:
        """Every readable record, by name (corrupt ones are left out: see :meth:`corrupt`)."""
        return self.scan()[0]

    def corrupt(self) -> dict[str, str]:
        """``{name: what is wrong}`` for every record object that cannot be read as a record."""
        return self.scan()[1]

    def put(self, record: Deployment, expected: str | None = CURRENT) -> str:
        """Store ``record`` if the object is still ETag ``expected`` (None: must not exist); the new ETag.

        ``CURRENT`` reads the ETag first. Bytes equal to the stored ones write nothing.
        """
        data = record.to_json().encode("utf-8")
        current = self._raw(record.name)
        if current is not None and current[0] == data and expected in (CURRENT, current[1]):
            return current[1]
        if expected is CURRENT:
            expected = None if current is None else current[1]
        try:
            return self.gateway.put_object_if(self.bucket, record_key(record.name), data, if_match=expected)
        except WriteConflict:
            now = self._raw(record.name)
            if now is not None and now[0] == data:
                return now[1]  # our own write, retried after its answer was lost
            raise RecordConflict(conflict_message(record.name, self.where(record.name), self.read(record.name).record)) from None

    def delete(self, name: str, expected: str | None = CURRENT) -> bool:
        """Delete ``name``'s record if it is still ETag ``expected``; False when there was none."""
        if expected is CURRENT:
            current = self._raw(name)
            if current is None:
                return False
            expected = current[1]
        if expected is None:
            if self._raw(name) is None:
                return False
            raise RecordConflict(conflict_message(name, self.where(name), self.read(name).record))
        try:
            self.gateway.delete_object_if(self.bucket, record_key(name), if_match=expected)
            return True
        except WriteConflict:
            if self._raw(name) is None:
                return False
            raise RecordConflict(conflict_message(name, self.where(name), self.read(name).record)) from None


def this_owner() -> dict[str, Any]:
    """Who holds a lease: the Dagster run (when there is one), the host and the process."""
    return {"run_id": os.environ.get(RUN_ID_ENV, ""), "host": socket.gethostname(), "pid": os.getpid()}


def _owner_text(body: dict[str, Any]) -> str:
    owner = body.get("owner") if isinstance(body.get("owner"), dict) else {}
    run = f"run {owner.get('run_id')} " if owner.get("run_id") else ""
    return f"{run}on {owner.get('host', '?')} (pid {owner.get('pid', '?')})"


@dataclass
class _Held:
    name: str
    token: str
    acquired_at: float
    etag: str
    stop: threading.Event = field(default_factory=threading.Event)
    lost: str | None = None
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class S3Leases:
    """The shared :class:`~meta_deployer.lease.DeployLeases`: a lease object per repo, with an expiry.

    See the module docstring for the protocol. ``poll_s`` is how often a waiter looks again.
    """

    def __init__(
        self,
        gateway: AwsGateway,
        bucket: str,
        *,
        ttl_s: float = DEFAULT_LEASE_TTL_S,
        timeout_s: float = DEFAULT_LEASE_TIMEOUT_S,
        poll_s: float | None = None,
        owner: dict[str, Any] | None = None,
    ):
        self.gateway = gateway
        self.bucket = bucket
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.poll_s = poll_s if poll_s is not None else min(1.0, ttl_s / 4)
        self.owner = owner or this_owner()
        self._held: dict[str, _Held] = {}

    def where(self, name: str) -> str:
        return f"s3://{self.bucket}/{lease_key(name)}"

    def _body(self, name: str, token: str, acquired_at: float) -> bytes:
        now = time.time()
        return json.dumps(
            {
                "name": name,
                "owner": self.owner,
                "token": token,
                "acquired_at": acquired_at,
                "renewed_at": now,
                "expires_at": now + self.ttl_s,
                "ttl_s": self.ttl_s,
            },
            sort_keys=True,
        ).encode("utf-8")

    def read(self, name: str) -> tuple[dict[str, Any] | None, str] | None:
        """``(body, etag)`` of ``name``'s lease object (body None when unreadable), or None when free."""
        found = self.gateway.get_object(self.bucket, lease_key(name), MAX_LEASE_BYTES)
        if found is None:
            return None
        raw, etag = found
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None, etag
        return (body if isinstance(body, dict) and body.get("name") == name else None), etag

    # -- acquire -------------------------------------------------------------
    def acquire(self, name: str, log: Log) -> None:
        """Hold ``name``'s lease, waiting for another holder up to ``timeout_s``; again: a no-op."""
        if name in self._held:
            return
        key = lease_key(name)
        token = uuid.uuid4().hex
        started = time.monotonic()
        deadline = started + self.timeout_s
        seen: tuple[str, float] | None = None  # (etag, when first seen), to judge expiry on our own clock
        waited = False
        while True:
            acquired_at = time.time()
            body = self._body(name, token, acquired_at)
            current = self.read(name)
            try:
                if current is None:
                    etag = self.gateway.put_object_if(self.bucket, key, body, if_match=None)
                else:
                    holder, their_etag = current
                    if seen is None or seen[0] != their_etag:
                        seen = (their_etag, time.monotonic())
                    expired = holder is None or _expired(holder, time.monotonic() - seen[1])
                    if not expired:
                        assert holder is not None
                        if not waited:
                            log(
                                f"{name}: another deploy of this repo holds its lease ({_owner_text(holder)}, since "
                                f"{_when(holder.get('acquired_at'))}, until {_when(holder.get('expires_at'))}); waiting for it"
                            )
                            waited = True
                        if time.monotonic() >= deadline:
                            raise LeaseTimeout(
                                f"{name}: another deploy of this repo ({_owner_text(holder)}) held its lease for over "
                                f"{self.timeout_s:.0f}s; try again later"
                            )
                        time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
                        continue
                    etag = self.gateway.put_object_if(self.bucket, key, body, if_match=their_etag)
                    log(
                        f"{name}: took over the expired deploy lease of "
                        f"{_owner_text(holder) if holder else 'an unreadable lease object'}"
                    )
            except WriteConflict:
                mine = self.read(name)
                if mine is None or mine[0] is None or mine[0].get("token") != token:
                    continue  # someone else got there first: look again
                etag = mine[1]  # our own write, retried after its answer was lost
            break
        if waited:
            log(f"{name}: got the deploy lease after {time.monotonic() - started:.1f}s")
        held = _Held(name, token, acquired_at, etag)
        held.thread = threading.Thread(target=self._heartbeat, args=(held, log), name=f"lease-{name}", daemon=True)
        self._held[name] = held
        held.thread.start()

    # -- hold ----------------------------------------------------------------
    def _heartbeat(self, held: _Held, log: Log) -> None:
        """Renew ``held`` every ttl/3 until released; stop (and mark it lost) when it was taken."""
        key = lease_key(held.name)
        while not held.stop.wait(self.ttl_s / 3):
            with held.lock:
                if held.stop.is_set():
                    return
                try:
                    held.etag = self.gateway.put_object_if(
                        self.bucket, key, self._body(held.name, held.token, held.acquired_at), if_match=held.etag
                    )
                except WriteConflict:
                    mine = self.read(held.name)
                    if mine is not None and mine[0] is not None and mine[0].get("token") == held.token:
                        held.etag = mine[1]
                        continue
                    held.lost = f"{held.name}: this deploy's lease expired and was taken over by another deploy"
                    log(f"warning: {held.lost}; this deploy will not switch")
                    return
                except AwsOperationError as exc:  # transient: the lease lives until expires_at; try again
                    log(f"warning: {held.name}: could not renew the deploy lease ({exc}); retrying")

    def ensure_held(self, name: str) -> None:
        """LeaseLost when this process's lease on ``name`` was taken over (its renewal found it changed)."""
        held = self._held.get(name)
        if held is not None and held.lost:
            raise LeaseLost(f"{held.lost}; run the deploy again")

    def release(self, name: str) -> None:
        """Stop renewing and delete the lease if it is still ours (If-Match); anything else is left alone."""
        held = self._held.pop(name, None)
        if held is None:
            return
        held.stop.set()
        with held.lock:
            pass  # a renewal in flight has finished: held.etag is the last one
        if held.thread is not None:
            held.thread.join(timeout=self.ttl_s)
        if held.lost:
            return
        try:
            self.gateway.delete_object_if(self.bucket, lease_key(name), if_match=held.etag)
        except WriteConflict:
            pass  # no longer ours: another deploy holds it now
        except AwsOperationError:
            pass  # it expires by itself after ttl_s


def _expired(holder: dict[str, Any], unchanged_for_s: float) -> bool:
    """True when ``holder``'s lease has run out: its expiry is past, or it went unrenewed for its whole ttl."""
    expires_at, ttl_s = holder.get("expires_at"), holder.get("ttl_s")
    if not isinstance(expires_at, (int, float)) or not isinstance(ttl_s, (int, float)):
        return True  # not one of ours: nobody renews it
    return expires_at < time.time() or unchanged_for_s > ttl_s


def _when(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
