"""workspace.yaml rendering (pure) and atomic, change-only writes."""

import os

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
