"""The REST API's bad-input matrix, tokens and OpenAPI document: a real uvicorn server, an httpx client.

No Dagster webserver answers here (DAGSTER_WEBSERVER_URL is a closed port): every request below must be
refused before anything would be launched, with a problem+json document naming the field, and leave
repos/ and workspace.yaml byte-identical. tests/test_api_e2e.py launches for real.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from apikit import api_server, create_token

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"git_url": "https://github.com/acme/team-a.git", "branch": "main", "python_file": "definitions.py"}


def snapshot(project) -> dict[str, bytes]:
    files = {str(p.relative_to(project.root)): p.read_bytes() for p in project.repos.rglob("*") if p.is_file()}
    files["workspace"] = project.workspace_bytes()
    return files


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One API server for the whole matrix, over a project with two configured repos."""
    from conftest import free_port
    from devkit import Project

    root = tmp_path_factory.mktemp("api")
    project = Project(root / "project")
    for name in ("team-a", "team-b"):
        (project.repos / name).mkdir(parents=True)
        (project.repos / name / "config.yml").write_text(
            f"name: {name}\ngit_url: https://github.com/acme/{name}.git\nbranch: main\npython_file: definitions.py\n")
    env = {**os.environ, **project.env(), "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{free_port()}",
           "META_DEPLOYER_API_RATE_LIMIT": "1000"}
    tokens = {scope: create_token(env, scope) for scope in ("admin", "read", "repo:team-b")}
    with api_server(env, root) as api:
        yield project, api, tokens


def problem(response: httpx.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def test_the_token_is_printed_once_on_its_last_line_and_only_its_hash_is_stored(served):
    project, _, tokens = served
    stored = (project.work / "api" / "tokens.json").read_text()
    for token in tokens.values():
        assert token.startswith("mdt_") and " " not in token
        assert token not in stored
    entries = json.loads(stored)["tokens"]
    assert sorted(sorted(e["scopes"]) for e in entries) == [["admin"], ["read"], ["repo:team-b"]]
    assert all(len(e["sha256"]) == 64 for e in entries)


def test_bad_input_is_refused_with_a_problem_naming_the_field_and_nothing_changes(served):
    project, api, tokens = served
    before = snapshot(project)
    admin = api.client(tokens["admin"])

    # unknown keys, invalid and lookalike names, a foreign s3_prefix
    body = problem(admin.put("/v1/repositories/team-a", json={**GOOD, "replicas": 3}), 422, "replicas")
    assert "replicas" in body["detail"] or any("replicas" in e["field"] for e in body["errors"])
    problem(admin.put("/v1/repositories/Team_A", json=GOOD), 422, "name")
    problem(admin.put("/v1/repositories/t\u0435am-a", json=GOOD), 422, "name")  # a Cyrillic "e"
    problem(admin.put("/v1/repositories/team-a", json={**GOOD, "name": "team-b"}), 422, "name")
    body = problem(admin.put("/v1/repositories/team-a", json={**GOOD, "s3_prefix": "repos/team-b"}), 422, "s3_prefix")
    assert "repos/team-a" in json.dumps(body)
    problem(admin.put("/v1/repositories/team-a", json={**GOOD, "git_url": "-oProxyCommand=x"}), 422, "git_url")

    # malformed JSON, a body that is not an object, 10 MB
    problem(admin.put("/v1/repositories/team-a", content=b'{"git_url": ', headers={"Content-Type": "application/json"}), 400, "body")
    problem(admin.put("/v1/repositories/team-a", json=["git_url"]), 422, "body")
    big = b'{"git_url": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    problem(admin.put("/v1/repositories/team-a", content=big, headers={"Content-Type": "application/json"}), 413, "body")

    # tokens: missing, wrong, another repo's, read-only
    problem(httpx.get(f"{api.url}/v1/repositories"), 401, "Authorization")
    problem(api.client("mdt_deadbeef_not-a-token").get("/v1/repositories"), 401, "Authorization")
    problem(httpx.put(f"{api.url}/v1/repositories/team-a", json=GOOD), 401, "Authorization")
    team_b = api.client(tokens["repo:team-b"])
    problem(team_b.get("/v1/repositories/team-a"), 404, "name")
    problem(team_b.put("/v1/repositories/team-a", json=GOOD), 404, "name")
    problem(team_b.delete("/v1/repositories/team-a"), 404, "name")
    problem(team_b.post("/v1/repositories/team-a/rollback", json={"deployment": "abcdef1"}), 404, "name")
    assert [r["name"] for r in team_b.get("/v1/repositories").json()["repositories"]] == ["team-b"]
    problem(api.client(tokens["read"]).delete("/v1/repositories/team-a"), 403, "Authorization")
    problem(team_b.post("/v1/repositories/team-b/rollback", json={"deployment": "HEAD~1"}), 422, "deployment")
    problem(team_b.post("/v1/repositories/team-b/rollback", json={"deployment": "abcdef1", "force": True}), 422, "force")

    # the same Idempotency-Key with another body
    first = admin.put("/v1/repositories/team-a", json={**GOOD, "nope": 1}, headers={"Idempotency-Key": "k-1"})
    problem(first, 422, "nope")
    replay = admin.put("/v1/repositories/team-a", json={**GOOD, "nope": 1}, headers={"Idempotency-Key": "k-1"})
    assert replay.status_code == 422 and replay.json() == first.json() and replay.headers["idempotency-replayed"] == "true"
    problem(admin.put("/v1/repositories/team-a", json={**GOOD, "nope": 2}, headers={"Idempotency-Key": "k-1"}), 422, "Idempotency-Key")

    # webhooks: a wrong or missing signature, a wrong GitLab token, a replayed delivery
    push = {"ref": "refs/heads/main", "repository": {"clone_url": "https://github.com/acme/nobody.git"}}
    problem(api.github(push, "d-1", secret=b"wrong"), 401, "X-Hub-Signature-256")
    unsigned = httpx.post(f"{api.url}/v1/webhooks/github", json=push, headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-0"})
    problem(unsigned, 401, "X-Hub-Signature-256")
    gitlab = {"X-Gitlab-Token": "wrong", "X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "g-1"}
    problem(httpx.post(f"{api.url}/v1/webhooks/gitlab", json={"ref": "refs/heads/main"}, headers=gitlab), 401, "X-Gitlab-Token")
    accepted = api.github(push, "d-1")  # authentic, but no repo follows that repository: nothing to launch
    assert accepted.status_code == 202 and accepted.json()["launched"] == []
    problem(api.github(push, "d-1"), 409, "delivery")
    malformed = httpx.post(f"{api.url}/v1/webhooks/github", content=b"{not json", headers=_signed(api, b"{not json", "d-3"))
    problem(malformed, 400, "body")

    assert snapshot(project) == before
    log = api.log.read_text()
    assert "401" in log and "unknown token" in log
    for secret in (*tokens.values(), api.secret.decode(), "not-a-token"):
        assert secret not in log


def _signed(api, body: bytes, delivery: str) -> dict:
    import hashlib
    import hmac

    signature = "sha256=" + hmac.new(api.secret, body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": signature, "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery}


def test_listing_shows_the_configured_repos_and_health_says_dagster_is_unreachable(served):
    _, api, tokens = served
    listed = api.client(tokens["read"]).get("/v1/repositories").json()["repositories"]
    assert [(r["name"], r["status"], r["spec"]["branch"]) for r in listed] == [
        ("team-a", "not deployed", "main"), ("team-b", "not deployed", "main")]
    health = httpx.get(f"{api.url}/healthz").json()
    assert health["status"] == "ok" and health["dagster"] == "unreachable"
    # no Dagster: a mutation that passes every check is a 502 saying nothing was launched
    body = problem(api.client(tokens["admin"]).post("/v1/repositories/team-a/deployments"), 502)
    assert "nothing was launched" in body["detail"]


def test_the_served_openapi_document_is_the_committed_one(served):
    _, api, _ = served
    served_doc = httpx.get(f"{api.url}/openapi.json").json()
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served_doc == committed, "docs/openapi.json is stale: .venv/bin/meta-deployer api --openapi > docs/openapi.json"
    assert {"/v1/repositories", "/v1/repositories/{name}", "/v1/repositories/{name}/rollback", "/v1/operations/{op_id}/events",
            "/v1/webhooks/github", "/v1/webhooks/gitlab", "/healthz"} <= set(served_doc["paths"])


def test_with_a_configuration_repository_a_put_is_a_commit_there_and_the_same_put_commits_nothing(tmp_path, git_remote):
    """GitOps: the API commits repos/<name>/config.yml to the configuration repository's branch (a bare remote)."""
    from conftest import free_port
    from devkit import Project
    from gitrepo import git

    seed = git_remote("config", files={"repos/.gitkeep": ""})
    bare = tmp_path / "config.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed.path), str(bare))
    project = Project(tmp_path / "project")
    project.repos.mkdir(parents=True)
    env = {**os.environ, **project.env(), "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{free_port()}",
           "META_DEPLOYER_CONFIG_GIT_URL": f"file://{bare}"}
    token = create_token(env, "repo:team-git")
    with api_server(env, tmp_path) as api, api.client(token) as client:
        created = client.put("/v1/repositories/team-git", json=GOOD)
        assert created.status_code == 201, created.text
        commit = created.json()["commit"]
        assert git(bare, "rev-parse", "main") == commit
        text = git(bare, "show", "main:repos/team-git/config.yml")
        assert "git_url: https://github.com/acme/team-a.git" in text and "name: team-git" in text
        again = client.put("/v1/repositories/team-git", json=GOOD)
        assert again.status_code == 200 and again.json()["commit"] is None, again.text
        assert git(bare, "rev-parse", "main") == commit
        problem(client.put("/v1/repositories/team-git", json={**GOOD, "branch": "-x"}), 422, "branch")
        assert git(bare, "rev-parse", "main") == commit
        removed = client.delete("/v1/repositories/team-git")
        assert removed.status_code == 202, removed.text
        assert "team-git" not in git(bare, "ls-tree", "-r", "--name-only", "main")
    assert list(project.repos.iterdir()) == []  # nothing local was written


def test_mutations_past_the_rate_limit_are_429_and_a_replayed_key_is_not_counted(tmp_path):
    from conftest import free_port
    from devkit import Project

    project = Project(tmp_path / "project")
    project.repos.mkdir(parents=True)
    env = {**os.environ, **project.env(), "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{free_port()}",
           "META_DEPLOYER_API_RATE_LIMIT": "2"}
    token = create_token(env, "admin")
    with api_server(env, tmp_path) as api, api.client(token) as client:
        key = {"Idempotency-Key": "same"}
        assert client.post("/v1/repositories/team-x/deployments", headers=key).status_code == 404
        assert client.post("/v1/repositories/team-x/deployments", headers=key).status_code == 404  # replayed
        assert client.post("/v1/repositories/team-x/deployments").status_code == 404
        limited = client.post("/v1/repositories/team-x/deployments")
        problem(limited, 429, "Authorization")
        assert int(limited.headers["retry-after"]) >= 1
        assert client.get("/v1/repositories").status_code == 200  # reads are not limited


def test_a_repository_with_several_locations_is_one_repository_with_its_locations(tmp_path):
    """config.yml ``locations:`` (issue 13): listed once with each location's state; a location's own name
    is no repository (404 naming the repository); a repo:<name> token covers its locations; logs are each
    location's in turn. Records are written into the state store as a deploy writes them."""
    import time

    from conftest import free_port
    from devkit import Project

    from meta_deployer.settings import Settings
    from meta_deployer.spec import load_spec
    from meta_deployer.state import Deployment, record_store

    project = Project(tmp_path / "project")
    for name, extra in (("multi", "locations:\n  - name: ingest\n    python_file: ingest/defs.py\n"
                                  "  - name: ml\n    module_name: ml.defs\n"),
                        ("solo", "python_file: definitions.py\n")):
        (project.repos / name).mkdir(parents=True)
        (project.repos / name / "config.yml").write_text(
            f"name: {name}\ngit_url: https://github.com/acme/{name}.git\nbranch: main\n{extra}")
    env = {**os.environ, **project.env(), "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{free_port()}"}
    settings = Settings.from_env(env)
    spec = load_spec(project.repos / "multi" / "config.yml")
    # multi-ingest deployed; multi-ml not yet; multi-old deployed earlier but no longer listed
    for part, commit in (("multi-ingest", "a" * 40), ("multi-old", "b" * 40)):
        record_store(settings).put(Deployment(
            name=part, git_url=spec.git_url, branch="main", commit=commit, platform=settings.platform,
            artifact=f"/venvs/{part}", endpoint=f"grpc://127.0.0.1:4{len(part)}", workspace_entry={},
            fingerprint="f", spec_hash=spec.content_hash(), deployed_at=time.time(), duration_s=1.0,
            metadata={"dagster_version": "1.12.0"}, parent="multi"))
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    (settings.logs_dir / "multi-ingest.log").write_text("ingest serving\n")
    (settings.logs_dir / "multi-old.log").write_text("old serving\n")
    before = snapshot(project)
    tokens = {scope: create_token(env, scope) for scope in ("read", "repo:multi", "repo:multi-ingest", "repo:solo")}
    with api_server(env, tmp_path) as api:
        reader, owner = api.client(tokens["read"]), api.client(tokens["repo:multi"])
        listed = {r["name"]: r for r in reader.get("/v1/repositories").json()["repositories"]}
        assert sorted(listed) == ["multi", "solo"]  # no location listed as a repo of its own
        assert listed["solo"]["locations"] == [] and listed["solo"]["status"] == "not deployed"
        multi = listed["multi"]
        assert [(p["name"], p["location"], p["commit"]) for p in multi["locations"]] == [
            ("multi-ingest", "ingest", "a" * 40), ("multi-ml", "ml", None), ("multi-old", None, "b" * 40)]
        statuses = {p["name"]: p["status"] for p in multi["locations"]}
        assert statuses == {"multi-ingest": "deployed (webserver not answering)", "multi-ml": "not deployed",
                            "multi-old": "no longer in config.yml"}
        assert multi["status"] == "not deployed"  # the worst of its parts
        ingest = multi["locations"][0]
        assert ingest["artifact"] == "/venvs/multi-ingest" and ingest["dagster_version"] == "1.12.0"
        assert ingest["endpoint"].startswith("grpc://")
        assert multi["commit"] is None and multi["spec"]["locations"][1]["module_name"] == "ml.defs"

        one = owner.get("/v1/repositories/multi")
        assert one.status_code == 200 and [p["name"] for p in one.json()["locations"]] == [
            "multi-ingest", "multi-ml", "multi-old"]
        # a location's name is no repository: 404 naming the repository, on reads and mutations alike
        for response in (owner.get("/v1/repositories/multi-ingest"), owner.get("/v1/repositories/multi-ml/deployments"),
                         owner.delete("/v1/repositories/multi-ingest"), owner.post("/v1/repositories/multi-ml/deployments"),
                         owner.put("/v1/repositories/multi-ingest", json=GOOD)):
            body = problem(response, 404, "name")
            assert "/v1/repositories/multi" in body["detail"], body
        # a token scoped to a location's name reads nothing; repo:multi covers every location
        located = api.client(tokens["repo:multi-ingest"])
        assert located.get("/v1/repositories").json()["repositories"] == []
        body = problem(located.get("/v1/repositories/multi-ingest"), 404, "name")
        assert "multi" not in body["detail"].replace("multi-ingest", "")
        problem(api.client(tokens["repo:solo"]).get("/v1/repositories/multi"), 404, "name")

        logs = owner.get("/v1/repositories/multi/logs").json()
        assert logs == {"repository": "multi",
                        "lines": ["==> multi-ingest <==", "ingest serving", "==> multi-old <==", "old serving"]}
        problem(owner.get("/v1/repositories/solo/logs"), 404, "name")
        # mutations name the repository: past every check, only the launch (no Dagster here) fails
        assert "nothing was launched" in problem(owner.post("/v1/repositories/multi/deployments"), 502)["detail"]
        assert "nothing was launched" in problem(owner.delete("/v1/repositories/multi"), 502)["detail"]
    assert snapshot(project) == before


def test_removing_a_repository_with_several_locations_ends_each_locations_history(project):
    """remove_repo (run in process on the project's instance) records ``removed`` on code_locations/<repo>
    and on each location's asset, so the history the API lists and a rollback reads starts afresh."""
    import time

    from dagster import AssetKey, DagsterInstance

    from meta_deployer import definitions as d
    from meta_deployer.runconfig import remove_run_config
    from meta_deployer.settings import Settings
    from meta_deployer.state import Deployment, record_store

    settings = Settings.from_env()
    for part in ("multi-ingest", "multi-ml"):
        record_store(settings).put(Deployment(
            name=part, git_url="https://github.com/acme/multi.git", branch="main", commit="a" * 40,
            platform=settings.platform, artifact="", endpoint="",
            workspace_entry={"grpc_server": {"host": "127.0.0.1", "port": 1, "location_name": part}},
            fingerprint="f", spec_hash="h", deployed_at=time.time(), duration_s=1.0, parent="multi"))
    with DagsterInstance.get() as instance:
        result = d.defs.get_job_def("remove_repo").execute_in_process(remove_run_config("multi"), instance=instance)
        assert result.success
        for name in ("multi", "multi-ingest", "multi-ml"):
            latest = instance.fetch_materializations(AssetKey(["code_locations", name]), limit=1).records
            assert [r.asset_materialization.metadata["status"].value for r in latest] == ["removed"], name
    assert record_store(settings).all() == {}


def test_tokens_in_a_secrets_manager_secret(tmp_path, moto):
    """Production keeps the token hashes in Secrets Manager (META_DEPLOYER_API_TOKENS_SECRET_ARN): make
    api-token writes a new version of the secret, the real server checks bearer tokens against it, and
    the token itself is stored nowhere."""
    import boto3
    from conftest import free_port
    from devkit import Project

    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="dagster/platform/api-tokens", SecretString='{"tokens": []}'
    )["ARN"]
    project = Project(tmp_path / "project")
    (project.repos / "team-a").mkdir(parents=True)
    (project.repos / "team-a" / "config.yml").write_text(
        "name: team-a\ngit_url: https://github.com/acme/team-a.git\nbranch: main\npython_file: definitions.py\n")
    env = {**os.environ, **project.env(), "DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{free_port()}",
           "META_DEPLOYER_API_TOKENS_SECRET_ARN": arn, "AWS_ENDPOINT_URL": moto.url,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    token = create_token(env, "repo:team-a")
    stored = boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(SecretId=arn)["SecretString"]
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored
    assert not (project.work / "api" / "tokens.json").exists()
    with api_server(env, tmp_path) as api:
        ok = httpx.get(f"{api.url}/v1/repositories/team-a", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200, ok.text
        wrong = httpx.get(f"{api.url}/v1/repositories/team-a", headers={"Authorization": f"Bearer {token}x"})
        problem(wrong, 401)
    with pytest.raises(subprocess.CalledProcessError):
        create_token({**env, "META_DEPLOYER_API_TOKENS_SECRET_ARN": arn.replace("api-tokens", "gone")}, "admin")
