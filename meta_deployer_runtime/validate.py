"""Validate a location on any supported Dagster release: start its code server, ask it over gRPC.

``python -m meta_deployer_runtime.validate [TARGET ARGS...]`` runs with the location's own python
(its virtualenv on ``dev``, its image on ``docker``/``ecs``). It

1. prints ``META_DEPLOYER_DAGSTER_VERSION=<version>`` first (the installed ``dagster``; ``none`` when
   there is none), so the deployer can check the version even when what follows fails;
2. starts ``dagster api grpc --lazy-load-user-code`` on the target (default: the location entry point,
   ``--module-name meta_deployer_runtime.entrypoint``) on a free localhost port. A lazily loading
   server stays up when the user's code fails to import and reports the error over gRPC;
3. pings it, then asks ``ListRepositories`` (which every 1.x server answers;
   ``dagster definitions validate`` does not exist in older releases);
4. prints ``META_DEPLOYER_VALIDATION=<json>`` last: ``{"ok", "stage", "dagster_version",
   "repositories", "error"}`` where ``stage`` names what failed: ``dagster`` (not installed),
   ``version`` (outside the supported minors the deployer names in ``META_DEPLOYER_DAGSTER_WINDOW``,
   e.g. ``1.10,1.11,1.12,1.13``: checked before any server starts, so a builder never tags or pushes
   an image holding another release),
   ``server`` (the code server did not start or answer), ``load`` (the user's definitions failed to
   load), or ``ok``. The exit code is 0 only when the definitions loaded.

It imports only dagster and the standard library (it ships into every location).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata

from meta_deployer_runtime.contract import ENTRYPOINT_MODULE

VERSION_PREFIX = "META_DEPLOYER_DAGSTER_VERSION="
RESULT_PREFIX = "META_DEPLOYER_VALIDATION="
#: Seconds the code server may take to start and load the definitions (``META_DEPLOYER_VALIDATE_TIMEOUT``).
DEFAULT_TIMEOUT_S = 300.0
EXIT_CODES = {"ok": 0, "load": 2, "server": 3, "dagster": 4, "version": 5}
#: The supported minors (comma-separated), set by the deployer wherever it validates.
WINDOW_ENV = "META_DEPLOYER_DAGSTER_WINDOW"
_TAIL = 40


def installed_dagster() -> str | None:
    """The installed dagster release, or None."""
    try:
        return metadata.version("dagster")
    except metadata.PackageNotFoundError:
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-_TAIL:])
    except OSError:
        return ""


def _result(stage: str, version: str | None, error: str = "", repositories: list[str] | None = None) -> dict:
    return {"ok": stage == "ok", "stage": stage, "dagster_version": version, "error": error,
            "repositories": repositories or []}


def validate(target: list[str], timeout: float = DEFAULT_TIMEOUT_S) -> dict:
    """Start the code server on ``target`` and ask it for its repositories; the result dict (see above)."""
    version = installed_dagster()
    if version is None:
        return _result("dagster", None, "dagster is not installed in this environment")
    window = [m.strip() for m in os.environ.get(WINDOW_ENV, "").split(",") if m.strip()]
    if window and ".".join(version.split(".")[:2]) not in window:
        return _result("version", version, f"dagster {version} is outside the supported minors {', '.join(window)}")
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value

    port = _free_port()
    command = [sys.executable, "-m", "dagster", "api", "grpc", "--host", "127.0.0.1", "--port", str(port),
               "--lazy-load-user-code", *target]
    with tempfile.NamedTemporaryFile("w+", prefix="code-server-", suffix=".log", delete=False) as out:
        output = out.name
    # As under `dagster definitions validate`: code may skip work at import time (connections) when it is set.
    env = {**os.environ, "DAGSTER_IS_DEFS_VALIDATION_CLI": "1"}
    server = subprocess.Popen(command, stdout=open(output, "w"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                return _result("server", version, f"the code server (dagster {version}) exited with code "
                               f"{server.returncode} before it answered:\n{_tail(output)}")
            try:
                client.ping("meta_deployer")
                break
            except Exception:
                if time.monotonic() > deadline:
                    return _result("server", version, f"the code server (dagster {version}) did not answer "
                                   f"within {timeout:.0f}s:\n{_tail(output)}")
                time.sleep(0.2)
        try:
            answer = deserialize_value(client.list_repositories())
        except Exception as exc:  # noqa: BLE001 - the server answered ping, then failed
            return _result("server", version, f"the code server (dagster {version}) failed to list its "
                           f"repositories: {exc!r}\n{_tail(output)}")
        if hasattr(answer, "repository_symbols"):
            names = sorted(symbol.repository_name for symbol in answer.repository_symbols)
            return _result("ok", version, repositories=names)
        error = answer.to_string() if hasattr(answer, "to_string") else repr(answer)
        return _result("load", version, f"the definitions failed to load:\n{error}")
    finally:
        try:
            client.shutdown_server()
        except Exception:  # noqa: BLE001 - it may be gone already
            pass
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        os.unlink(output)


def parse_output(text: str) -> tuple[str | None, dict | None]:
    """(the dagster version line's value or None, the result or None) from the validator's output."""
    version, result = None, None
    for line in text.splitlines():
        if line.startswith(VERSION_PREFIX):
            value = line[len(VERSION_PREFIX):].strip()
            version = None if value == "none" else value
        elif line.startswith(RESULT_PREFIX):
            try:
                result = json.loads(line[len(RESULT_PREFIX):])
            except ValueError:
                result = None
    return version, result


def main(argv: list[str]) -> int:
    target = argv or ["--module-name", ENTRYPOINT_MODULE]
    print(f"{VERSION_PREFIX}{installed_dagster() or 'none'}", flush=True)
    timeout = float(os.environ.get("META_DEPLOYER_VALIDATE_TIMEOUT") or DEFAULT_TIMEOUT_S)
    result = validate(target, timeout)
    if result["error"]:
        sys.stderr.write(result["error"].rstrip() + "\n")
    print(f"{RESULT_PREFIX}{json.dumps(result)}", flush=True)
    return EXIT_CODES[result["stage"]]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
