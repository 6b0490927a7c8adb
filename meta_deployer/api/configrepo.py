"""Changing ``repos/<name>/config.yml`` in the platform's configuration repository (GitOps), for the API.

With ``META_DEPLOYER_CONFIG_GIT_URL`` the configs live in that repository's branch and the
``repos_sensor`` deploys what is merged there; the API then commits the change to that branch (a fresh
shallow clone in a temporary folder, never the sensor's cached checkout) and pushes it, and the sensor
deploys it at its next tick. The clone's ``repos/`` and ``repos/<name>/`` must be real folders of the
clone: a symbolic link planted there is refused, never written through.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from meta_deployer import gitops
from meta_deployer.errors import ConfigSourceError, SpecError
from meta_deployer.settings import Settings
from meta_deployer.spec import RepoSpec, dump_spec, spec_from_bytes

AUTHOR = {"GIT_AUTHOR_NAME": "meta_deployer API", "GIT_AUTHOR_EMAIL": "api@meta-deployer.local",
          "GIT_COMMITTER_NAME": "meta_deployer API", "GIT_COMMITTER_EMAIL": "api@meta-deployer.local"}


def commit_config(settings: Settings, name: str, spec: RepoSpec | None, same=lambda a, b: a == b) -> str | None:
    """Commit ``repos/<name>/config.yml`` as ``spec`` says (None: delete it) and push; the new commit, or
    None when the branch already says that. ConfigSourceError when the repository cannot be changed."""
    from git import GitCommandError, Repo

    url = gitops.resolve_url(settings.config_git_url or "", settings.root)
    branch = settings.config_git_branch
    auth = settings.git_auth()
    env = gitops.git_env(url, auth)
    shown = gitops.redact(settings.config_git_url or "", auth.secrets)
    with tempfile.TemporaryDirectory(prefix="md-config-") as tmp:
        try:
            repo = Repo.clone_from(url, tmp, env=env, branch=branch, single_branch=True, depth=1, no_tags=True)
            folder = Path(tmp) / "repos" / name
            path = folder / "config.yml"
            for part in (Path(tmp) / "repos", folder, path):
                if os.path.islink(part):
                    raise ConfigSourceError(f"{shown}: {part.relative_to(tmp)} is a symbolic link; nothing was committed")
            if spec is None:
                if not path.exists():
                    return None
                path.unlink()
                message = f"meta_deployer API: remove repos/{name}/config.yml"
            else:
                if path.is_file():
                    try:
                        if same(spec_from_bytes(path.read_bytes(), str(path), name), spec):
                            return None
                    except SpecError:
                        pass  # an invalid file is replaced
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(dump_spec(spec), encoding="utf-8")
                message = f"meta_deployer API: set repos/{name}/config.yml"
            with repo.git.custom_environment(**env, **AUTHOR):
                repo.git.add("-A", "--", f"repos/{name}")
                repo.git.commit("-q", "-m", message)
                repo.git.push("origin", f"HEAD:refs/heads/{branch}")
            return repo.head.commit.hexsha
        except GitCommandError as exc:
            detail = gitops.redact(" ".join(str(exc.stderr or exc).split())[-400:], auth.secrets)
            raise ConfigSourceError(f"cannot commit to the configuration repository {shown} branch {branch}: {detail}") from None
