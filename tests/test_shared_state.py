"""State that every task sees (meta_deployer.s3state): records and deploy leases in the bucket, on a moto server.

The AWS rules relied on, and where they are written down:

- PutObject ``If-None-Match: *`` writes only when the key does not exist, else ``412 PreconditionFailed``;
  ``If-Match: <etag>`` writes only when the object's ETag is that one, else 412
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html);
- DeleteObject ``If-Match: <etag>`` deletes only that version, else 412
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html);
- two conditional requests racing on one key: the loser gets ``409 ConditionalRequestConflict``, to be retried
  (PutObject API reference, IfNoneMatch/IfMatch).

moto accepts what AWS rejects (it would take an unconditional write as well), so the tests below also check,
on the wire (botocore's ``before-send``), that every write and delete we send carries its condition.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from meta_deployer.errors import WriteConflict
from meta_deployer.lease import LeaseTimeout
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.registry import Registry
from meta_deployer.s3state import S3Leases, S3Records, lease_key, record_key
from meta_deployer.settings import Settings
from meta_deployer.state import Deployment, RecordConflict
from meta_deployer import workspace as ws

BUCKET = "dagster-storage"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def s3(moto):
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def record(name: str, commit: str = "c" * 40, platform: str = "ecs") -> Deployment:
    entry = {"grpc_server": {"host": f"{name}-service.local", "port": 4000, "location_name": name, "commit": commit[:6]}}
    return Deployment(
        name=name, git_url="https://example.com/x.git", branch="main", commit=commit, platform=platform,
        artifact="r/x@sha256:" + "0" * 64, endpoint=f"{name}-service.local:4000", workspace_entry=entry,
        fingerprint=commit[:16], spec_hash="s", deployed_at=0.0, duration_s=0.0,
    )


class Wire:
    """Every request a gateway's S3 client sends: (method, key, headers)."""

    def __init__(self, gateway: AwsGateway):
        self.sent: list[tuple[str, str, dict[str, str]]] = []
        gateway.s3.meta.events.register("before-send.s3", self._record)

    def _record(self, request, **_):
        key = request.url.split(f"/{BUCKET}/", 1)[-1].split("?", 1)[0]
        self.sent.append((request.method, key, {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}))

    def writes(self) -> list[tuple[str, str, dict[str, str]]]:
        return [s for s in self.sent if s[0] in ("PUT", "DELETE", "POST")]


# -- the conditional-write rules against the requests we send ------------------------------------------------


def test_every_record_write_and_delete_carries_its_condition(s3):
    gateway = AwsGateway()
    wire = Wire(gateway)
    store = S3Records(gateway, BUCKET)
    etag1 = store.put(record("sales"))  # create
    etag2 = store.put(record("sales", "d" * 40), expected=etag1)  # update
    assert store.put(record("sales", "d" * 40), expected=etag2) == etag2  # the same bytes: nothing sent
    assert store.delete("sales", expected=etag2)
    writes = wire.writes()
    assert [(m, k) for m, k, _ in writes] == [("PUT", "system/deployments/sales.json")] * 2 + [("DELETE", "system/deployments/sales.json")]
    assert writes[0][2].get("If-None-Match") == "*" and "If-Match" not in writes[0][2]
    assert writes[1][2].get("If-Match") == etag1 and "If-None-Match" not in writes[1][2]
    assert writes[2][2].get("If-Match") == etag2


def test_every_lease_write_and_delete_carries_its_condition(s3):
    gateway = AwsGateway()
    wire = Wire(gateway)
    leases = S3Leases(gateway, BUCKET, ttl_s=30)
    leases.acquire("sales", lambda _: None)
    held_etag = leases._held["sales"].etag
    leases.release("sales")
    writes = wire.writes()
    assert [(m, k) for m, k, _ in writes] == [("PUT", "system/leases/sales.json"), ("DELETE", "system/leases/sales.json")]
    assert writes[0][2].get("If-None-Match") == "*"
    assert writes[1][2].get("If-Match") == held_etag
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="system/leases/")


def test_a_condition_that_does_not_hold_is_a_conflict_and_writes_nothing(s3):
    gateway = AwsGateway()
    etag = gateway.put_object_if(BUCKET, "system/x.json", b"1", if_match=None)
    with pytest.raises(WriteConflict):
        gateway.put_object_if(BUCKET, "system/x.json", b"2", if_match=None)  # exists: If-None-Match fails
    with pytest.raises(WriteConflict):
        gateway.put_object_if(BUCKET, "system/x.json", b"3", if_match='"not-the-etag"')
    with pytest.raises(WriteConflict):
        gateway.delete_object_if(BUCKET, "system/x.json", if_match='"not-the-etag"')
    assert s3.get_object(Bucket=BUCKET, Key="system/x.json")["Body"].read() == b"1"
    gateway.delete_object_if(BUCKET, "system/x.json", if_match=etag)
    with pytest.raises(WriteConflict):  # gone: If-Match has nothing to match
        gateway.put_object_if(BUCKET, "system/x.json", b"4", if_match=etag)


def _conflict_409(**_):
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ConditionalRequestConflict</Code>'
        b"<Message>A conflicting operation is in progress</Message></Error>"
    )

    class Raw:
        def stream(self, **_):
            yield body

    return AWSResponse("http://s3", 409, {"Content-Type": "application/xml"}, Raw())


def test_a_409_conditional_request_conflict_is_sent_again_then_reported(s3):
    gateway = AwsGateway(max_attempts=1)
    answers = iter([_conflict_409, None])  # the first attempt loses a race, the second goes through
    gateway.s3.meta.events.register("before-send.s3.PutObject", lambda **kw: (next(answers, None) or (lambda **_: None))(**kw))
    assert gateway.put_object_if(BUCKET, "system/y.json", b"1", if_match=None)
    assert s3.get_object(Bucket=BUCKET, Key="system/y.json")["Body"].read() == b"1"

    always = AwsGateway(max_attempts=1)
    always.s3.meta.events.register("before-send.s3.PutObject", _conflict_409)
    with pytest.raises(WriteConflict, match="ConditionalRequestConflict"):
        always.put_object_if(BUCKET, "system/z.json", b"1", if_match=None)


def test_names_are_checked_before_they_become_keys():
    for bad in ("../etc", "system", "A", "x/y"):
        with pytest.raises(ValueError, match="repo name"):
            record_key(bad)
        with pytest.raises(ValueError, match="repo name"):
            lease_key(bad)


# -- records --------------------------------------------------------------------------------------------------


def test_two_writers_that_read_the_same_record_cannot_both_win(s3):
    a, b = S3Records(AwsGateway(), BUCKET), S3Records(AwsGateway(), BUCKET)
    a.put(record("sales", "a" * 40))
    version_a, version_b = a.read("sales").version, b.read("sales").version
    assert version_a == version_b
    b.put(record("sales", "b" * 40), expected=version_b)
    with pytest.raises(RecordConflict) as info:
        a.put(record("sales", "c" * 40), expected=version_a)
    assert "bbbbbbbbbbbb" in str(info.value) and "deploy sales again" in str(info.value)
    assert a.get("sales").commit == "b" * 40  # the winner's, whole


def test_two_creators_cannot_both_win(s3):
    a, b = S3Records(AwsGateway(), BUCKET), S3Records(AwsGateway(), BUCKET)
    a.put(record("sales", "a" * 40), expected=None)
    with pytest.raises(RecordConflict):
        b.put(record("sales", "b" * 40), expected=None)
    assert b.get("sales").commit == "a" * 40


def s3_settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {"META_DEPLOYER_ROOT": str(tmp_path), "META_DEPLOYER_PLATFORM": "ecs", "META_DEPLOYER_BUCKET": BUCKET, **env}
    )


def test_the_registry_that_loses_leaves_the_winners_record_and_workspace_entry(s3, tmp_path):
    settings = s3_settings(tmp_path)
    first, second = Registry(settings), Registry(settings)
    first.update(put=record("sales", "a" * 40))
    seen = first.read("sales").version
    second.update(put=record("sales", "b" * 40), expected=second.read("sales").version)
    with pytest.raises(RecordConflict):
        first.update(put=record("sales", "c" * 40), expected=seen)
    assert first.get("sales").commit == "b" * 40
    assert ws.read_entries(settings.workspace)["sales"] == record("sales", "b" * 40).workspace_entry


def test_a_corrupt_s3_record_stays_its_own_repos_problem_and_the_next_deploy_rewrites_it(s3, tmp_path):
    settings = s3_settings(tmp_path)
    registry = Registry(settings)
    assert registry.store.where("beta") == f"s3://{BUCKET}/system/deployments/beta.json"
    for name in ("alpha", "beta"):
        registry.update(put=record(name))
    s3.put_object(Bucket=BUCKET, Key="system/deployments/beta.json", Body=b'{"name": "beta", "commit": "ab')
    assert registry.get("beta") is None
    assert set(registry.all()) == {"alpha"}
    assert f"s3://{BUCKET}/system/deployments/beta.json: corrupt deployment record" in registry.store.corrupt()["beta"]
    registry.update(put=record("gamma"))  # another repo's deploy keeps beta's entry
    assert set(ws.read_entries(settings.workspace)) == {"alpha", "beta", "gamma"}
    version = registry.read("beta").version
    assert version is not None  # a corrupt record still has a version: its next deploy overwrites exactly it
    registry.update(put=record("beta", "e" * 40), expected=version)
    assert registry.get("beta").commit == "e" * 40 and not registry.store.corrupt()


def test_records_hold_no_secret(s3):
    store = S3Records(AwsGateway(), BUCKET)
    store.put(record("sales"))
    body = json.loads(s3.get_object(Bucket=BUCKET, Key="system/deployments/sales.json")["Body"].read())
    assert "@" not in body["git_url"].split("//", 1)[1].split("/", 1)[0]  # no user or token in the URL's host part
    assert set(body) == set(Deployment.__dataclass_fields__)


# -- leases across processes ------------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys
    from meta_deployer.platforms.aws.gateway import AwsGateway
    from meta_deployer.s3state import S3Leases
    leases = S3Leases(AwsGateway(), sys.argv[1], ttl_s=float(sys.argv[2]), timeout_s=120, poll_s=0.05)
    leases.acquire("sales", lambda line: print("LOG", line, flush=True))
    print("HELD", flush=True)
    if sys.stdin.readline().strip() == "release":
        leases.release("sales")
        print("RELEASED", flush=True)
    """
)


def start_holder(ttl_s: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, BUCKET, str(ttl_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def read_until(proc: subprocess.Popen, word: str) -> list[str]:
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line.rstrip("\n"))
        if line.startswith(word):
            return lines
    raise AssertionError(f"process ended before {word!r}: {lines}, rc={proc.wait()}")


def lease_body(s3) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key="system/leases/sales.json")["Body"].read())


def test_the_second_holder_waits_while_the_first_renews_then_gets_it_after_release(s3):
    first = start_holder(ttl_s=1.0)
    second = None
    try:
        read_until(first, "HELD")
        second = start_holder(ttl_s=1.0)
        waiting = read_until(second, "LOG")
        assert "holds its lease" in waiting[-1] and f"pid {first.pid}" in waiting[-1]
        # The first renews while it works: wait for two renewals (longer than a ttl), and it is still the holder.
        renewals = {lease_body(s3)["renewed_at"]}
        for _ in range(1200):  # a guard against a hang, not a timing assert
            if len(renewals) >= 3:
                break
            time.sleep(0.05)
            renewals.add(lease_body(s3)["renewed_at"])
        assert len(renewals) >= 3, "the holder never renewed its lease"
        assert lease_body(s3)["owner"]["pid"] == first.pid
        first.stdin.write("release\n")  # type: ignore[union-attr]
        first.stdin.flush()  # type: ignore[union-attr]
        read_until(first, "RELEASED")
        got = read_until(second, "HELD")
        assert any("got the deploy lease" in line for line in got)
        assert lease_body(s3)["owner"]["pid"] == second.pid
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()


def test_a_killed_holders_lease_is_taken_over_after_it_expires(s3):
    holder = start_holder(ttl_s=1.0)
    try:
        read_until(holder, "HELD")
    finally:
        holder.send_signal(signal.SIGKILL)  # no release, no more renewals
        holder.wait()
    assert lease_body(s3)["owner"]["pid"] == holder.pid
    lines: list[str] = []
    leases = S3Leases(AwsGateway(), BUCKET, ttl_s=30, timeout_s=120, poll_s=0.05)
    leases.acquire("sales", lines.append)
    try:
        assert any("took over the expired deploy lease" in line and f"pid {holder.pid}" in line for line in lines), lines
        assert lease_body(s3)["owner"]["pid"] == os.getpid()
    finally:
        leases.release("sales")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="system/leases/")


def test_a_holder_whose_lease_was_taken_over_deletes_nothing_on_release(s3):
    holder = start_holder(ttl_s=1.0)
    leases = S3Leases(AwsGateway(), BUCKET, ttl_s=30, timeout_s=120, poll_s=0.05)
    try:
        read_until(holder, "HELD")
        holder.send_signal(signal.SIGSTOP)  # frozen (a long pause): it stops renewing
        leases.acquire("sales", lambda _: None)
        mine = lease_body(s3)["token"]
        holder.send_signal(signal.SIGCONT)
        holder.stdin.write("release\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        read_until(holder, "RELEASED")
        assert lease_body(s3)["token"] == mine  # its conditional delete did not match: our lease stands
    finally:
        holder.kill()
        holder.wait()
        leases.release("sales")


def test_release_by_a_process_that_does_not_hold_the_lease_does_nothing(s3):
    holder = S3Leases(AwsGateway(), BUCKET, ttl_s=30)
    holder.acquire("sales", lambda _: None)
    try:
        before = lease_body(s3)
        other = S3Leases(AwsGateway(), BUCKET, ttl_s=30)
        other.release("sales")
        assert lease_body(s3) == before
    finally:
        holder.release("sales")


def test_waiting_is_bounded_and_names_the_holder(s3):
    holder = S3Leases(AwsGateway(), BUCKET, ttl_s=600)
    holder.acquire("sales", lambda _: None)
    try:
        waiter = S3Leases(AwsGateway(), BUCKET, ttl_s=600, timeout_s=0.2, poll_s=0.05)
        with pytest.raises(LeaseTimeout, match=f"pid {os.getpid()}"):
            waiter.acquire("sales", lambda _: None)
    finally:
        holder.release("sales")


# -- a full deploy on the ecs platform keeps its record in the bucket ---------------------------------------------


def test_an_ecs_deploy_records_in_s3_and_the_second_deploy_reads_it_back_and_does_nothing(moto, tmp_path, git_remote):
    from devkit import definitions_py
    from conftest import free_port
    from meta_deployer.model import Artifact
    from meta_deployer.pipeline import Deployer
    from meta_deployer.platforms.aws.bootstrap import bootstrap
    from meta_deployer.platforms.ecs import EcsPlatform
    from meta_deployer.spec import parse_spec
    from test_ecs_support import make_network, published_for

    class PrebuiltImage(EcsPlatform):
        """The ecs platform with its image already in the registry: no Docker engine here (ECS in moto never pulls)."""

        def build(self, spec, checkout, log, run_id=None):
            return Artifact(kind="image", ref=published_for(spec.name).ref, fingerprint="f", built=False)

        def publish(self, spec, artifact, log):
            return published_for(spec.name)

    remote = git_remote(files={"definitions.py": definitions_py("orders")})
    settings = Settings.from_env(
        {"META_DEPLOYER_ROOT": str(tmp_path), **make_network(), "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{free_port()}"}
    )
    assert settings.state_backend == "s3"  # ecs: state in the storage root
    bootstrap(settings, log=lambda _: None)
    spec = parse_spec({"name": "sales", "git_url": remote.url, "python_file": "definitions.py"}, "test")
    lines: list[str] = []

    first = Deployer(settings, PrebuiltImage(settings)).deploy(spec, lines.append)
    s3 = boto3.client("s3")
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key="system/deployments/sales.json")["Body"].read())
    assert stored["commit"] == remote.head() and stored["fingerprint"] == first.fingerprint
    assert not (settings.state_dir / "sales.json").exists()  # nothing local
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="system/leases/")  # released after switch
    etag = s3.head_object(Bucket=BUCKET, Key="system/deployments/sales.json")["ETag"]

    again = Deployer(settings, PrebuiltImage(settings))  # a fresh process's view: only what is in the bucket
    wire = Wire(again.registry.store.gateway)
    second = again.deploy(spec, lines.append)
    assert second.unchanged and "already serves on ecs; nothing to do" in "\n".join(lines)
    assert [(m, k) for m, k, _ in wire.writes()] == []  # the record is read back, not rewritten
    assert s3.head_object(Bucket=BUCKET, Key="system/deployments/sales.json")["ETag"] == etag


def test_local_records_follow_the_same_compare_and_swap_rule(tmp_path):
    settings = Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path)})
    assert settings.state_backend == "local"
    first, second = Registry(settings), Registry(settings)
    first.update(put=record("sales", "a" * 40, platform="dev"))
    seen = first.read("sales").version
    second.update(put=record("sales", "b" * 40, platform="dev"), expected=second.read("sales").version)
    with pytest.raises(RecordConflict, match="bbbbbbbbbbbb"):
        first.update(put=record("sales", "c" * 40, platform="dev"), expected=seen)
    assert first.get("sales").commit == "b" * 40
    assert ws.read_entries(settings.workspace)["sales"] == record("sales", "b" * 40).workspace_entry
    with pytest.raises(RecordConflict):  # a create when one exists
        first.update(put=record("sales", "d" * 40, platform="dev"), expected=None)
