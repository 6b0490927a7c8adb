"""End to end: the REST API (a real uvicorn) in front of a real `dagster dev` (webserver + daemon), over HTTP.

Create a repo from a real git repository and follow its operation to success; it is LOADED with its
asset. Push a commit and deliver a webhook signed as GitHub signs it: the new asset serves (and the
payload's SHA is never used), and a second mutation sent meanwhile runs after it, not beside it. Roll back to the first deployment: the first version serves again, its
artifact reused (nothing rebuilt). Delete it. Every change is a run of the meta_deployer location.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from apikit import api_server, create_token, webhook_operation
from dagster_ui import wait_for_location
from devkit import dagster_dev, definitions_py
from meta_deployer.webserver import location_statuses

pytestmark = pytest.mark.e2e


def follow(client: httpx.Client, op_id: str, timeout: float = 300) -> dict:
    """Poll the operation until its run ends; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = client.get(f"/v1/operations/{op_id}").json()
        if op["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return op
        time.sleep(1)
    raise AssertionError(f"operation {op_id} still {op['status']} after {timeout}s: {op}")


def sse(client: httpx.Client, op_id: str) -> list[tuple[str, dict]]:
    """Every server-sent event of the operation, until its `end` event."""
    out, kind = [], None
    with client.stream("GET", f"/v1/operations/{op_id}/events", timeout=300) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                out.append((kind, json.loads(line[6:])))
                if kind == "end":
                    break
    return out


def wait_for_assets(url: str, name: str, assets: set[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = set((location_statuses(url).get(name) or {}).get("assets", []))
        if seen == assets:
            return
        time.sleep(1)
    raise AssertionError(f"{name} serves {seen}, expected exactly {assets}")


def test_create_push_webhook_rollback_delete_through_the_api(project, git_remote):
    remote = git_remote(files={"definitions.py": definitions_py("first")})
    first_commit = remote.head()
    with dagster_dev(project) as dagster_url:
        env = {**__import__("os").environ, **project.env(), "DAGSTER_WEBSERVER_URL": dagster_url}
        admin_token = create_token(env, "admin")
        with api_server(env, project.root) as api:
            admin = api.client(admin_token)

            # create: 201, an operation that is the add_repo run, followed to success over SSE
            created = admin.put("/v1/repositories/team-api", json={"git_url": remote.url, "branch": "main"})
            assert created.status_code == 201, created.text
            op_id = created.json()["operation"]["id"]
            assert created.headers["location"] == f"/v1/operations/{op_id}"
            events = sse(admin, op_id)
            assert events[-1] == ("end", {"status": "SUCCESS"}), events[-5:]
            assert {(e["step"] or "").split(".")[-1] for kind, e in events if kind == "log"} >= {"clone", "build", "write_workspace"}
            op = follow(admin, op_id)
            assert (op["job"], op["status"], op["phase"], op["repository"]) == ("add_repo", "SUCCESS", "done", "team-api")
            wait_for_location(dagster_url, "team-api", assets=["first"])
            repo = admin.get("/v1/repositories/team-api").json()
            assert (repo["commit"], repo["status"], repo["platform"]) == (first_commit, "LOADED", "dev")
            assert repo["dagster_version"] and op_id in [o["id"] for o in repo["operations"]]
            assert (project.repos / "team-api" / "config.yml").is_file()

            # the same desired state again: 200 and nothing launched
            again = admin.put("/v1/repositories/team-api", json={"git_url": remote.url, "branch": "main"})
            assert again.status_code == 200 and again.json()["operation"] is None, again.text

            # push + a signed webhook: update_repo of the branch head (the payload's SHA is not used)
            second_commit = remote.commit({"definitions.py": definitions_py("first", "second")})
            payload = {"ref": "refs/heads/main", "after": "0" * 40, "repository": {"clone_url": remote.url}}
            hook = api.github(payload, "delivery-1")
            assert hook.status_code == 202 and hook.json()["failed"] == [], hook.text
            launched = {"id": webhook_operation(admin, hook, "team-api", {op_id})}
            assert api.github(payload, "delivery-1").status_code == 409  # a replay launches nothing
            # a second mutation of the same repo meanwhile: its own operation, run after the first, never beside it
            other = admin.post("/v1/repositories/team-api/deployments")
            assert other.status_code == 202 and other.json()["operation"]["id"] != launched["id"], other.text
            op = follow(admin, launched["id"])
            assert (op["job"], op["status"]) == ("update_repo", "SUCCESS"), op
            op2 = follow(admin, other.json()["operation"]["id"])
            assert op2["status"] == "SUCCESS", op2
            assert op2["started_at"] >= op["ended_at"] or op["started_at"] >= op2["ended_at"], (op, op2)
            wait_for_assets(dagster_url, "team-api", {"first", "second"})
            assert admin.get("/v1/repositories/team-api").json()["commit"] == second_commit

            # the history, and a rollback to the first deployment: served again, not rebuilt
            history = admin.get("/v1/repositories/team-api/deployments").json()["deployments"]
            deployed = [d for d in history if d["outcome"] == "deployed"]
            assert [d["commit"] for d in deployed] == [second_commit, first_commit]
            assert deployed[1]["id"] == op_id and deployed[1]["artifact"]
            rolled = admin.post("/v1/repositories/team-api/rollback", json={"deployment": op_id},
                                headers={"Idempotency-Key": "rollback-1"})
            assert rolled.status_code == 202, rolled.text
            same = admin.post("/v1/repositories/team-api/rollback", json={"deployment": op_id},
                              headers={"Idempotency-Key": "rollback-1"})
            assert same.json()["operation"]["id"] == rolled.json()["operation"]["id"]  # nothing new launched
            op = follow(admin, rolled.json()["operation"]["id"])
            assert (op["job"], op["status"]) == ("rollback_repo", "SUCCESS"), op
            wait_for_assets(dagster_url, "team-api", {"first"})
            repo = admin.get("/v1/repositories/team-api").json()
            assert (repo["commit"], repo["artifact"]) == (first_commit, deployed[1]["artifact"])
            assert op["error"] is None
            lines = _all_lines(admin, op["id"])  # the finished run's events, replayed over SSE
            assert any("already built and validated" in line for line in lines), lines[-20:]  # not rebuilt
            latest = admin.get("/v1/repositories/team-api/deployments").json()["deployments"][0]
            assert (latest["job"], latest["commit"], latest["rollback_of"]) == ("rollback_repo", first_commit, op_id)

            # logs, then delete
            logs = admin.get("/v1/repositories/team-api/logs").json()["lines"]
            assert any("team-api" in line for line in logs)
            removed = admin.delete("/v1/repositories/team-api")
            assert removed.status_code == 202, removed.text
            assert follow(admin, removed.json()["operation"]["id"])["status"] == "SUCCESS"
            wait_for_location(dagster_url, "team-api", present=False)
            assert not (project.repos / "team-api").exists()
            assert admin.get("/v1/repositories/team-api").status_code == 404


def _all_lines(client: httpx.Client, op_id: str) -> list[str]:
    return [e["message"] for kind, e in sse(client, op_id) if kind == "log"]
