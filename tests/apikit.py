"""The REST API for tests: a real uvicorn server in its own process, reached over HTTP with httpx."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Api:
    url: str
    log: Path
    secret: bytes

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def github(self, payload: dict, delivery: str, secret: bytes | None = None, event: str = "push") -> httpx.Response:
        """Deliver a GitHub webhook, signed as GitHub signs it (HMAC-SHA256 of the raw body)."""
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(secret if secret is not None else self.secret, body, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": signature, "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                   "Content-Type": "application/json"}
        return httpx.post(f"{self.url}/v1/webhooks/github", content=body, headers=headers, timeout=30)


def create_token(env: dict[str, str], scopes: str) -> str:
    """``meta-deployer api-token`` (what make api-token runs): the token is alone on the last line."""
    out = subprocess.run([sys.executable, "-m", "meta_deployer.cli", "api-token", "--scopes", scopes],
                         env=env, check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


@contextmanager
def api_server(env: dict[str, str], root: Path, secret: bytes = b"s3cret-webhook-key") -> Iterator[Api]:
    """``meta-deployer api`` (what make api runs) on a free port, with a webhook secret file."""
    from conftest import free_port, wait_for_port

    port = free_port()
    secret_file = root / "webhook-secret"
    secret_file.write_bytes(secret + b"\n")
    secret_file.chmod(0o600)
    full = {**env, "META_DEPLOYER_WEBHOOK_SECRET_FILE": str(secret_file), "API_PORT": str(port)}
    log_path = root / "api.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "meta_deployer.cli", "api"], env=full, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(port, timeout=60, proc=proc)
            yield Api(f"http://127.0.0.1:{port}", log_path, secret)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def webhook_operation(client: httpx.Client, answer: httpx.Response, repo: str, known: set[str], timeout: float = 60) -> str:
    """The id of the update_repo run a webhook answer launched for ``repo``: in the answer, or, when the
    launch finished after the answer, the newest operation of the repo not in ``known``."""
    import time

    for op in answer.json()["launched"]:
        if op["repository"] == repo:
            return op["id"]
    assert repo in [p["repository"] for p in answer.json()["launching"]], answer.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for op in client.get(f"/v1/repositories/{repo}").json()["operations"]:
            if op["job"] == "update_repo" and op["id"] not in known:
                return op["id"]
        time.sleep(0.05)
    raise AssertionError(f"no operation of {repo} appeared after the webhook: {answer.text}")
