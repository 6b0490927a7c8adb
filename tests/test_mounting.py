"""Base images and dynamic repository mounting: archives (pure), the runtime's checks, and the docker
platform with a real engine and registry (a code-only commit builds no image; a dependency change
builds FROM the cached base; a tampered archive never serves; a second deploy uploads nothing)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

import pytest
from dockerkit import (
    DEFINITIONS,
    Collect,
    make_settings,
    repo_names,  # noqa: F401 - fixture
    spec_for,
    unique_name,
)

from meta_deployer import codearchive, gitops, versions
from meta_deployer.errors import SpecError, ValidationFailed
from meta_deployer.model import Checkout
from meta_deployer.spec import parse_spec
from meta_deployer_runtime import contract
from meta_deployer_runtime.code import CodeArchiveError, fetch_code

# -- pure: the archive and the runtime's checks ---------------------------------------------


def _checkout(git_remote, tmp_path: Path, files: dict[str, str]) -> Checkout:
    remote = git_remote(files=files)
    path = tmp_path / "co"
    commit, changed = gitops.converge(remote.url, "main", path)
    return Checkout("alpha", path, commit, "main", remote.url, changed)


def test_the_archive_is_deterministic_and_the_runtime_checks_it(tmp_path, git_remote):
    co = _checkout(git_remote, tmp_path, {"definitions.py": "x = 1\n", "pkg/mod.py": "y = 2\n"})
    first, second = codearchive.make_archive(co.path), codearchive.make_archive(co.path)
    assert first == second  # same commit, same bytes, same sha256
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert sorted(tar.getnames()) == ["definitions.py", "pkg/mod.py"]  # tracked files only, no .git
    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(first)
    sha = hashlib.sha256(first).hexdigest()
    env = {contract.ENV_CODE_ARCHIVE: str(archive), contract.ENV_CODE_SHA256: sha,
           contract.ENV_CODE_DIR: str(tmp_path / "unpacked")}
    root = fetch_code(env)
    assert (root / "pkg" / "mod.py").read_text() == "y = 2\n" and root.name == sha
    assert fetch_code(env) == root  # a second process of the version reuses the copy

    archive.write_bytes(first[:-8] + b"tampered")
    with pytest.raises(CodeArchiveError, match="does not match its checksum"):
        fetch_code({**env, contract.ENV_CODE_DIR: str(tmp_path / "other")})
    assert not (tmp_path / "other" / sha).exists()


def test_the_runtime_refuses_an_archive_that_leaves_its_folder(tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(raw.getvalue())
    env = {contract.ENV_CODE_ARCHIVE: str(archive), contract.ENV_CODE_SHA256: hashlib.sha256(raw.getvalue()).hexdigest(),
           contract.ENV_CODE_DIR: str(tmp_path / "unpacked")}
    with pytest.raises(CodeArchiveError, match="not a plain file or folder inside it"):
        fetch_code(env)
    assert not (tmp_path / "escaped.py").exists()


def test_archive_keys_stay_under_the_repos_own_prefix():
    commit = "a" * 40
    assert contract.code_archive_key("sales", commit) == f"repos/sales/code/{commit}.tar.gz"
    for bad_name, bad_commit in (("../x", commit), ("Sales", commit), ("sales", "../../etc"), ("sales", "abc")):
        with pytest.raises(ValueError):
            contract.code_archive_key(bad_name, bad_commit)


def test_code_mounting_is_a_validated_boolean_and_leaves_old_spec_hashes_alone():
    plain = parse_spec({"name": "sales", "git_url": "."}, "x")
    assert plain.code_mounting is None
    assert parse_spec({"name": "sales", "git_url": ".", "code_mounting": True}, "x").code_mounting is True
    assert parse_spec({"name": "sales", "git_url": ".", "code_mounting": False}, "x").content_hash() != plain.content_hash()
    with pytest.raises(SpecError, match="code_mounting: must be true or false"):
        parse_spec({"name": "sales", "git_url": ".", "code_mounting": "yes"}, "x")


def test_a_base_holds_the_release_and_its_paired_libraries():
    for release in versions.tested_releases().values():
        aws = versions.library_version(release)
        assert versions.base_requirements(release) == (f"dagster=={release}", f"dagster-aws=={aws}", f"dagster-postgres=={aws}")
    pinned = versions.pin("dagster")
    assert versions.base_requirements(pinned) == tuple(versions.requirement(n) for n in versions.BASE_PACKAGES)
    with pytest.raises(ValueError, match="not supported"):
        versions.base_requirements("1.5.13")


def test_the_task_role_reads_its_own_code_archives_only():
    from iam_eval import s3_call_allowed

    from meta_deployer.platforms.aws.resources.task_role import task_role_policy

    policy = task_role_policy("bucket", "beta", ["alpha"])
    own = contract.code_archive_key("beta", "b" * 40)
    assert s3_call_allowed(policy, "bucket", "GetObject", own)
    assert s3_call_allowed(policy, "bucket", "ListObjectsV2", "repos/beta/code/")
    for other in ("alpha", "gamma", "beta-evil"):  # granted, not granted, prefix confusion
        key = contract.code_archive_key(other, "c" * 40)
        assert not s3_call_allowed(policy, "bucket", "GetObject", key), key
        assert not s3_call_allowed(policy, "bucket", "ListObjectsV2", f"repos/{other}/code/"), other
    # The granted repo's assets stay readable.
    assert s3_call_allowed(policy, "bucket", "GetObject", "repos/alpha/assets/orders")


# -- the docker platform, real engine and registry ------------------------------------------


def _registry_tags(registry: str, repository: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=10) as response:
            return sorted(json.loads(response.read()).get("tags") or [])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


def _asset_names(port: int, location: str) -> set[str]:
    """The asset keys the code server on ``port`` serves (asked over gRPC, as the webserver does)."""
    from dagster import DagsterInstance
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin

    origin = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name=location)
    with DagsterInstance.ephemeral() as instance, origin.create_location(instance) as code_location:
        return {
            node.asset_key.to_user_string()
            for repo in code_location.get_repositories().values()
            for node in repo.get_asset_node_snaps()
        }


@pytest.mark.docker
def test_code_only_change_builds_no_image_and_tampered_code_never_serves(tmp_path, git_remote, repo_names):
    from meta_deployer.pipeline import Deployer

    name = unique_name("m")
    repo_names.append(name)
    settings = make_settings(tmp_path)
    registry = settings.images.registry
    deployer = Deployer(settings)
    client = deployer.platform.client
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="one", value=1)})
    spec = spec_for(name, remote.url, python_file="definitions.py")
    log = Collect()

    first = deployer.deploy(spec, log)
    record = first.record
    assert first.artifact.metadata["mounted"] and ":deps-" in record.artifact and record.digest
    archive = Path(record.code_archive)
    assert archive == settings.storage_dir / contract.code_archive_key(name, first.checkout.commit)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == record.code_sha256
    base = first.artifact.metadata["base"]
    assert base.startswith(f"{registry}/dagster/base:{versions.pin('dagster')}-")
    port = record.workspace_entry["grpc_server"]["port"]
    assert _asset_names(port, name) == {"one"}

    # A code-only commit: no image is built or pushed; the new code serves from its archive.
    images_before = sorted(i.id for i in client.images.list(all=True))
    tags_before = _registry_tags(registry, f"dagster/{name}")
    base_tags = _registry_tags(registry, "dagster/base")
    remote.commit({"definitions.py": DEFINITIONS.format(asset="two", value=2)})
    second = deployer.deploy(spec, log)
    assert not second.artifact.built and second.record.artifact == record.artifact
    assert sorted(i.id for i in client.images.list(all=True)) == images_before
    assert _registry_tags(registry, f"dagster/{name}") == tags_before
    assert second.record.code_sha256 != record.code_sha256
    port2 = second.record.workspace_entry["grpc_server"]["port"]
    assert _asset_names(port2, name) == {"two"}

    # The same commit again: nothing to do, and its archive is written once (nothing uploaded).
    stat = Path(second.record.code_archive).stat()
    assert deployer.deploy(spec, log).unchanged
    again = codearchive.publish_code(settings, second.checkout, log)
    assert not again.written and again.sha256 == second.record.code_sha256
    assert Path(second.record.code_archive).stat().st_mtime_ns == stat.st_mtime_ns

    # A tampered archive (changed in storage after it was written) never starts; v2 keeps serving.
    remote.commit({"definitions.py": DEFINITIONS.format(asset="three", value=3)})
    commit3, _ = gitops.converge(remote.url, "main", settings.checkout_path(name))
    tampered = settings.storage_dir / contract.code_archive_key(name, commit3)
    tampered.parent.mkdir(parents=True, exist_ok=True)
    tampered.write_bytes(archive.read_bytes())  # v1's code under v3's name
    workspace = settings.workspace.read_bytes()
    with pytest.raises(ValidationFailed, match="does not match its checksum"):
        deployer.deploy(spec, log)
    assert settings.workspace.read_bytes() == workspace
    assert deployer.registry.get(name).code_sha256 == second.record.code_sha256
    assert _asset_names(port2, name) == {"two"}
    tampered.unlink()  # the remedy the message names: the next deploy writes it anew
    third = deployer.deploy(spec, log)
    assert _asset_names(third.record.workspace_entry["grpc_server"]["port"], name) == {"three"}

    # A dependency change: a new dependency image, built FROM the cached base (not rebuilt).
    remote.commit({"requirements.txt": "requests\n"})
    fourth = deployer.deploy(spec, log)
    assert fourth.artifact.built and fourth.record.artifact != record.artifact
    assert fourth.artifact.metadata["base"] == base
    assert _registry_tags(registry, "dagster/base") == base_tags
    base_layers = client.api.inspect_image(base)["RootFS"]["Layers"]
    new_layers = client.api.inspect_image(fourth.record.artifact)["RootFS"]["Layers"]
    assert new_layers[: len(base_layers)] == base_layers
    assert _asset_names(fourth.record.workspace_entry["grpc_server"]["port"], name) == {"three"}
    deployer.platform.stop(name, purge=False, log=log)
