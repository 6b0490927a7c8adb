"""The reload tells "no webserver" from "a slow webserver", and tries the slow one again.

The webserver here is a real HTTP server on 127.0.0.1 that answers the GraphQL mutation the way
dagster-webserver does, after a delay the test chooses; the client under test is ours.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port
from meta_deployer import webserver

WORKSPACE = {"data": {"reloadWorkspace": {"__typename": "Workspace", "locationEntries": [
    {"name": "sales", "loadStatus": "LOADED", "locationOrLoadError": {"__typename": "RepositoryLocation"}}
]}}}


@pytest.fixture
def slow_webserver():
    """A GraphQL endpoint whose first ``slow_answers`` answers take ``delay`` seconds."""
    state = {"requests": 0, "slow_answers": 0, "delay": 0.0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            state["requests"] += 1
            if state["requests"] <= state["slow_answers"]:
                time.sleep(state["delay"])
            body = json.dumps(WORKSPACE).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up on this one
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()


def test_no_webserver_is_reported_at_once():
    started = time.monotonic()
    result = webserver.reload_workspace(f"http://127.0.0.1:{free_port()}", timeout=30)
    assert not result.reached and "no webserver answered" in result.message
    assert time.monotonic() - started < 5  # not the reload timeout


def test_a_slow_webserver_is_tried_again_and_its_answer_used(slow_webserver):
    url, state = slow_webserver
    state.update(slow_answers=1, delay=1.0)
    result = webserver.reload_workspace(url, timeout=0.3)
    assert result.reached and result.locations == {"sales": "LOADED"}
    assert state["requests"] == 2


def test_a_webserver_slow_every_time_is_reported_as_slow_not_absent(slow_webserver):
    url, state = slow_webserver
    state.update(slow_answers=99, delay=0.6)
    result = webserver.reload_workspace(url, timeout=0.2)
    assert result.reached and "is running but did not answer" in result.message
    assert "no webserver" not in result.message
    assert state["requests"] == webserver.RELOAD_ATTEMPTS
