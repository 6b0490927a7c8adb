"""Where the ``repos/<name>/config.yml`` files come from: the local folder, or the platform's
configuration repository (GitOps).

By default the configs are the files under ``META_DEPLOYER_REPOS_DIR``. With
``META_DEPLOYER_CONFIG_GIT_URL`` (branch ``META_DEPLOYER_CONFIG_GIT_BRANCH``), they
are ``repos/*/config.yml`` of that repository's branch head: :func:`opened`
converges a checkout of it in the work area (``<work_dir>/config-repo``, with
``gitops.converged``: one ``ls-remote`` when the head did not move, the git
credentials bound to their hosts), pins the commit, and holds the checkout's lock
while the caller scans it, so the files read are those of that commit. The scan
is the local one (same size caps and YAML rules), confined to the checkout: a
symbolic link that leaves it is reported and never read.

A fetch that fails, or a checkout without a ``repos/`` folder (a wrong URL or
branch), raises :class:`ConfigSourceError`: callers change nothing then, since
"could not read the configs" must never look like "every config was deleted".
The checkout is a cache: nothing but git writes into it (deploys write no local
config.yml when the configs come from git; the deployment record is the truth).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from meta_deployer.errors import CloneError, ConfigSourceError, SpecError
from meta_deployer.scan import ScannedConfig, scan_repo_configs
from meta_deployer.settings import Settings
from meta_deployer.spec import RepoSpec, config_path, load_spec

#: The folder of the configuration repository that holds ``<name>/config.yml``.
REPOS_SUBDIR = "repos"


@dataclass(frozen=True)
class ConfigSource:
    """Config files to scan: ``repos_dir``, and for a configuration repository its pinned commit."""

    repos_dir: Path
    commit: str | None = None  # None: the local folder
    checkout: Path | None = None  # the configuration repository's checkout (the scan stays inside it)
    label: str = ""

    @property
    def from_git(self) -> bool:
        return self.commit is not None

    def scan(self, known: Mapping[str, str] | None = None) -> dict[str, ScannedConfig]:
        """Every ``<repos_dir>/*/config.yml``, as :func:`scan_repo_configs` (confined to the checkout)."""
        return scan_repo_configs(self.repos_dir, known=known, confine=self.checkout)


def describe(settings: Settings) -> str:
    """Where the configs come from, for messages (credentials redacted)."""
    if not settings.config_git_url:
        return str(settings.repos_dir)
    from meta_deployer import gitops  # GitPython: loaded only when a configuration repository is set

    return f"{gitops.redact(settings.config_git_url)} branch {settings.config_git_branch}"


@contextmanager
def opened(settings: Settings, lock_timeout: float | None = None) -> Iterator[ConfigSource]:
    """The configured source, ready to scan; for a configuration repository, its checkout converged to
    the branch head and locked until the block ends. ConfigSourceError when it cannot be read, or
    when another process holds the checkout for more than ``lock_timeout`` seconds (None: the
    deploys' own wait, ``gitops.CHECKOUT_LOCK_TIMEOUT_S``)."""
    if not settings.config_git_url:
        yield ConfigSource(settings.repos_dir, label=str(settings.repos_dir))
        return
    from meta_deployer import gitops  # GitPython: loaded only when a configuration repository is set

    url = gitops.resolve_url(settings.config_git_url, settings.root)
    dest = settings.config_repo_dir
    shown = describe(settings)
    with ExitStack() as stack:
        try:
            wait = gitops.CHECKOUT_LOCK_TIMEOUT_S if lock_timeout is None else lock_timeout
            commit, _ = stack.enter_context(
                gitops.converged(url, settings.config_git_branch, dest, settings.git_auth(), lock_timeout=wait)
            )
        except CloneError as exc:
            raise ConfigSourceError(f"cannot fetch the configuration repository {shown}: {exc}") from None
        repos = dest / REPOS_SUBDIR
        if os.path.islink(repos) or not repos.is_dir():
            raise ConfigSourceError(
                f"the configuration repository {shown} has no {REPOS_SUBDIR}/ folder at {commit[:12]} (wrong "
                f"URL or branch?); nothing was changed. An empty configuration keeps a {REPOS_SUBDIR}/.gitkeep"
            )
        yield ConfigSource(repos, commit, dest, f"{shown} at {commit[:12]}")


def scan(settings: Settings, known: Mapping[str, str] | None = None) -> tuple[ConfigSource, dict[str, ScannedConfig]]:
    """Open the configured source and scan it (``sync-repos``, ``validate``, ``list-repos``)."""
    with opened(settings) as source:
        return source, source.scan(known)



def configured_spec(settings: Settings, name: str) -> tuple[str, RepoSpec | None]:
    """Where ``name``'s config.yml is, and its spec (None when there is none): the local file, or the
    file of the configuration repository's branch head. SpecError when it is invalid."""
    if not settings.config_git_url:
        path = config_path(settings.repos_dir, name)
        return str(path), (load_spec(path) if path.is_file() else None)
    source, scanned = scan(settings)
    item = scanned.get(name)
    where = f"{REPOS_SUBDIR}/{name}/config.yml of {source.label}"
    if item is None:
        return where, None
    if item.error or item.spec is None:
        raise SpecError(where, [("", item.error or "unreadable")])
    return where, item.spec
