"""End to end on dev: repositories pinning different supported Dagster releases, side by side.

Three real git repositories pin three different supported releases (the three older minors of the
window) in their requirements.txt; ``make add-repo`` deploys each into its own virtualenv holding
exactly that release, and one real ``dagster dev`` (the deployer's own 1.13 webserver, each location's
code server started from its virtualenv) serves them side by side with their assets. A run of each
materializes through the prefix-enforcing IO manager, under ``repos/<name>/``. ``list-repos`` shows
each location's release. A repository pinning a release outside the window fails before anything is
deployed, naming the release and the window, and the workspace stays byte-identical.
"""

from __future__ import annotations

import pytest

from dagster_ui import materialize_when_daemon_ready, wait_for_location
from devkit import dagster_dev, definitions_py, run_make
from meta_deployer import versions

pytestmark = pytest.mark.e2e

#: name -> the release its requirements.txt pins: three different minors of the window.
PINNED = {f"team-v{minor.split('.')[1]}": release for minor, release in list(versions.tested_releases().items())[:3]}


def make(project, *args: str, check: bool = True, **env: str):
    return run_make(project, *args, env=env, check=check, timeout=600)


def test_three_releases_side_by_side_and_one_refused(project, git_remote):
    remotes = {
        name: git_remote(name=name, files={
            "definitions.py": definitions_py(f"asset_{name.replace('-', '_')}"),
            "requirements.txt": f"dagster=={release}\n",
        })
        for name, release in PINNED.items()
    }
    with dagster_dev(project) as url:
        for name, remote in remotes.items():
            make(project, "add-repo", f"REPO_URL={remote.url}", f"REPO_NAME={name}", DAGSTER_WEBSERVER_URL=url)
        for name, release in PINNED.items():
            asset = f"asset_{name.replace('-', '_')}"
            wait_for_location(url, name, assets=[asset], timeout=180)
            venv_python = project.work / "locations" / name / "current" / "venv" / "bin" / "python"
            assert any((venv_python.parent.parent / "lib").glob(f"python*/site-packages/dagster-{release}.dist-info"))
        for name in PINNED:
            asset = f"asset_{name.replace('-', '_')}"
            assert materialize_when_daemon_ready(url, name, [asset]) == "SUCCESS"
            assert (project.work / "storage" / "repos" / name / "assets" / asset).is_file()

        listed = make(project, "list-repos", DAGSTER_WEBSERVER_URL=url).stdout
        assert "DAGSTER" in listed.splitlines()[0]
        for name, release in PINNED.items():
            line = next(line for line in listed.splitlines() if line.startswith(name + " "))
            assert release in line.split() and "LOADED" in line, line

        before = project.workspace_bytes()
        old = git_remote(name="team-old", files={"definitions.py": definitions_py("old"),
                                                  "requirements.txt": "dagster==1.5.13\n"})
        refused = make(project, "add-repo", f"REPO_URL={old.url}", "REPO_NAME=team-old", check=False,
                       DAGSTER_WEBSERVER_URL=url)
        assert refused.returncode != 0
        error = refused.stdout + refused.stderr
        assert "dagster 1.5.13" in error and versions.window() in error and "requirements.txt" in error
        assert project.workspace_bytes() == before
        assert not (project.repos / "team-old").exists()
