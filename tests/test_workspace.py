"""workspace.yaml rendering (pure) and atomic, change-only writes."""

import os

import pytest
import yaml

from meta_deployer import workspace as ws


def entry(name, port=4000):
    return {"grpc_server": {"host": "localhost", "port": port, "location_name": name}}


def test_render_puts_self_first_then_repos_sorted():
    data = yaml.safe_load(ws.render({"zeta": entry("zeta"), "alpha": entry("alpha")}))
    names = [ws.location_name(e) for e in data["load_from"]]
    assert names == ["meta_deployer", "alpha", "zeta"]


def test_render_is_independent_of_key_order():
    a = {"grpc_server": {"port": 1, "host": "h", "location_name": "x"}}
    b = {"grpc_server": {"location_name": "x", "host": "h", "port": 1}}
    assert ws.render({"x": a}) == ws.render({"x": b})


def test_write_only_when_text_changes(tmp_path):
    path = tmp_path / "workspace.yaml"
    text = ws.render({"a": entry("a")})
    assert ws.write_if_changed(path, text) is True
    before = os.stat(path).st_ino
    assert ws.write_if_changed(path, text) is False
    assert os.stat(path).st_ino == before  # not rewritten
    assert ws.read_entries(path) == {"a": entry("a")}
    assert not list(tmp_path.glob(".workspace-*"))  # no temp files left behind


def test_committed_minimal_workspace_matches_the_renderer():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    committed = subprocess.run(
        ["git", "show", "HEAD:workspace/workspace.yaml"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert yaml.safe_load(committed) == yaml.safe_load(ws.render({}))


def test_readers_never_see_a_partial_workspace(tmp_path):
    """A reader polling the file while it is rewritten sees the old text or the new one, whole, always."""
    import threading

    path = tmp_path / "shared" / "workspace.yaml"
    texts = ["# a\n" + "a: 1\n" * 200_000, "# b\n" + "b: 2\n" * 150_000]  # ~1 MB each, written in many chunks
    ws.write_if_changed(path, texts[0])
    done = threading.Event()

    def writer():
        for i in range(1, 30):
            with ws.lock_for(path):
                ws.write_if_changed(path, texts[i % 2])
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while not done.is_set() or reads < 10:
        seen = path.read_text()  # never FileNotFoundError: the name always points at a whole file
        assert seen in texts, f"a reader saw a partial file of {len(seen)} characters"
        reads += 1
    thread.join()
    assert path.read_text() == texts[1]


def test_temp_file_and_lock_sit_beside_the_workspace_and_a_failed_write_leaves_no_trace(tmp_path):
    """Temp file and lock on the workspace's own volume (its folder); a failed write keeps the old file."""
    path = tmp_path / "shared" / "workspace.yaml"
    ws.write_if_changed(path, "load_from: []\n")
    assert ws.lock_for(path).lock_file == str(path) + ".lock"
    with pytest.raises(UnicodeEncodeError):
        ws.write_if_changed(path, "bad \udc80 text\n")  # fails half-way through the temp file
    assert path.read_text() == "load_from: []\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["workspace.yaml"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"
