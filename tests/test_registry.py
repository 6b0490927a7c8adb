"""config.yml is the user's file: the deployer edits only what it must add, and keeps the comments."""

from __future__ import annotations

from meta_deployer.registry import Registry
from meta_deployer.settings import Settings
from meta_deployer.spec import load_spec, parse_spec

WRITTEN = """\
# Sales pipelines, owned by the sales data team (#sales-data on chat).
name: sales
git_url: https://example.com/sales.git   # the mirror, not the upstream
branch: main

# Bigger tasks for the nightly backfill.
resources:
  cpu: 512
  memory: 2048
environment:
  - name: REGION     # where the warehouse lives
    value: eu-west-1
"""


def test_detected_code_source_is_added_and_every_comment_kept(tmp_path):
    settings = Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path)})
    path = settings.repos_dir / "sales" / "config.yml"
    path.parent.mkdir(parents=True)
    path.write_text(WRITTEN)
    completed = parse_spec({**load_spec(path).to_config(), "python_file": "definitions.py"}, "detected")
    lines = []
    Registry(settings).write_config(completed, lines.append)
    text = path.read_text()
    for comment in ("# Sales pipelines", "# the mirror, not the upstream", "# Bigger tasks", "# where the warehouse lives"):
        assert comment in text
    assert load_spec(path) == completed
    assert text.startswith(WRITTEN.splitlines()[0])
    before = path.read_bytes()
    Registry(settings).write_config(completed, lines.append)  # the second time: nothing to write
    assert path.read_bytes() == before and len(lines) == 1


def test_a_missing_file_is_written_in_full(tmp_path):
    settings = Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path)})
    spec = parse_spec({"name": "sales", "git_url": "https://example.com/sales.git", "python_file": "d.py"}, "x")
    Registry(settings).write_config(spec, lambda _: None)
    assert load_spec(settings.repos_dir / "sales" / "config.yml") == spec
