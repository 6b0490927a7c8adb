"""Keep one code server running: ``python -m meta_deployer_runtime.supervise LOG -- COMMAND...`` (stdlib only).

The dev platform (``meta_deployer.platforms.devservers``) starts one of these per
location version, detached in a session of its own, so it outlives the deploy
run, the ``make dev`` and the shell that started it. It runs ``COMMAND`` (the
location's ``dagster api grpc``) with its output appended to ``LOG`` (what
``repo-logs`` shows), and starts it again when it exits, after a pause that
grows from 1 s to 30 s while it keeps failing fast.

SIGTERM (or SIGINT) stops it: the server gets SIGTERM (only the server: runs it
launched keep going, as on the container platforms), ``STOP_TIMEOUT_S`` to exit,
then SIGKILL; then the supervisor exits. It runs with the location's own python,
so it imports nothing but the standard library.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

STOP_TIMEOUT_S = 10.0
MIN_BACKOFF_S, MAX_BACKOFF_S = 1.0, 30.0
#: A server that ran this long before it exited was healthy: the pause starts again from MIN_BACKOFF_S.
STABLE_S = 60.0


def _note(text: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} meta_deployer supervisor [{os.getpid()}]: {text}\n")
    sys.stderr.flush()


def supervise(log_file: str, command: list[str]) -> int:
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    backoff = MIN_BACKOFF_S
    with open(log_file, "ab", buffering=0) as log:
        while not stopping:
            started = time.monotonic()
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            _note(f"started the code server (pid {child.pid})")
            while child.poll() is None:
                try:
                    child.wait()
                except KeyboardInterrupt:  # pragma: no cover - SIGINT is handled above
                    stopping = True
            if stopping:
                break
            backoff = MIN_BACKOFF_S if time.monotonic() - started > STABLE_S else backoff
            _note(f"the code server exited with {child.returncode}; starting it again in {backoff:.0f}s")
            deadline = time.monotonic() + backoff
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.2)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        if child is not None and child.poll() is None:
            try:
                child.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        _note("stopped")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: python -m meta_deployer_runtime.supervise LOG_FILE -- COMMAND [ARGS...]\n")
        return 2
    return supervise(argv[0], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
