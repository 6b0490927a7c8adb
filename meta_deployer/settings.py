"""Settings read from environment variables, in one place.

Every setting has a named default, documented in README.md ("Settings").
Relative paths are resolved against ``META_DEPLOYER_ROOT`` (default: the
current directory, which the Makefile sets to the project root). Platform
specific settings (docker, ecs) live beside their platform and are read the
same way from the same environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meta_deployer.errors import SettingsError

PLATFORMS = ("dev", "docker", "ecs")
DEFAULT_PLATFORM = "dev"
DEFAULT_REPOS_DIR = "repos"
DEFAULT_WORKSPACE = "workspace/workspace.yaml"
DEFAULT_WORK_DIR = ".meta_deployer"
DEFAULT_WEBSERVER_URL = "http://localhost:3000"
DEFAULT_BUCKET = "dagster-storage"
DEFAULT_RELOAD_TIMEOUT_S = 120.0
#: Hosts the git token is sent to (``META_DEPLOYER_GIT_TOKEN_HOSTS``): none unless listed.
DEFAULT_GIT_TOKEN_HOSTS: tuple[str, ...] = ()
_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def env_number(
    env: Mapping[str, str], var: str, default: float, kind: type = float, minimum: float = 0, positive: bool = False
) -> Any:
    """The number in ``env[var]`` (``default`` when unset or empty), at least ``minimum`` (above 0
    with ``positive``); a SettingsError names the variable and what would be valid."""
    raw = env.get(var)
    if raw in (None, ""):
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{var}={raw!r} must be a {'whole ' if kind is int else ''}number") from None
    if value < minimum or (positive and value <= 0):
        raise SettingsError(f"{var}={raw!r} must be {'positive' if positive else f'at least {minimum}'}")
    return value


@dataclass(frozen=True)
class GitAuth:
    """The credentials git may use, and where: the token only for https to ``token_hosts``,
    the SSH key only with a pinned ``known_hosts`` file. Never logged (the token is not in repr)."""

    token: str | None = field(default=None, repr=False)
    token_hosts: tuple[str, ...] = DEFAULT_GIT_TOKEN_HOSTS
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None

    @property
    def secrets(self) -> tuple[str | None, ...]:
        """The values to redact from every message."""
        return (self.token,)


def _token_hosts(raw: str | None) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in (raw or "").split(",") if h.strip())
    for host in hosts:
        if not _HOST_NAME.match(host):
            raise SettingsError(
                f"META_DEPLOYER_GIT_TOKEN_HOSTS: {host!r} is not a host name; list bare host names separated "
                "by commas (for example github.com,git.example.com), without scheme, port, user or path"
            )
    return hosts


@dataclass(frozen=True)
class Settings:
    """The deployer's settings; build with :meth:`from_env`."""

    platform: str = DEFAULT_PLATFORM
    root: Path = field(default_factory=Path.cwd)
    repos_dir: Path = Path(DEFAULT_REPOS_DIR)
    workspace: Path = Path(DEFAULT_WORKSPACE)
    work_dir: Path = Path(DEFAULT_WORK_DIR)
    webserver_url: str = DEFAULT_WEBSERVER_URL
    bucket: str = DEFAULT_BUCKET
    storage_dir: Path | None = None
    git_token_file: Path | None = None
    git_token_hosts: tuple[str, ...] = DEFAULT_GIT_TOKEN_HOSTS
    git_ssh_key_file: Path | None = None
    git_known_hosts_file: Path | None = None
    reload_timeout_s: float = DEFAULT_RELOAD_TIMEOUT_S
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read settings from ``env`` (default ``os.environ``)."""
        env = dict(os.environ if env is None else env)
        root = Path(env.get("META_DEPLOYER_ROOT") or Path.cwd()).resolve()

        def path(var: str, default: str) -> Path:
            return (root / (env.get(var) or default)).resolve()

        platform = env.get("META_DEPLOYER_PLATFORM") or DEFAULT_PLATFORM
        if platform not in PLATFORMS:
            raise SettingsError(
                f"META_DEPLOYER_PLATFORM={platform!r} is not a platform; use one of {', '.join(PLATFORMS)}"
            )
        work_dir = path("META_DEPLOYER_WORK_DIR", DEFAULT_WORK_DIR)
        token_file = env.get("META_DEPLOYER_GIT_TOKEN_FILE")
        ssh_key = env.get("META_DEPLOYER_GIT_SSH_KEY_FILE")
        known_hosts = env.get("META_DEPLOYER_GIT_KNOWN_HOSTS_FILE")
        if ssh_key and not known_hosts:
            raise SettingsError(
                "META_DEPLOYER_GIT_SSH_KEY_FILE is set but META_DEPLOYER_GIT_KNOWN_HOSTS_FILE is not: an SSH deploy key "
                "is only used against pinned host keys; set META_DEPLOYER_GIT_KNOWN_HOSTS_FILE to a known_hosts file "
                "(for example the output of 'ssh-keyscan github.com', checked)"
            )
        reload_timeout = env_number(env, "META_DEPLOYER_RELOAD_TIMEOUT", DEFAULT_RELOAD_TIMEOUT_S, positive=True)
        return cls(
            platform=platform,
            root=root,
            repos_dir=path("META_DEPLOYER_REPOS_DIR", DEFAULT_REPOS_DIR),
            workspace=path("META_DEPLOYER_WORKSPACE", DEFAULT_WORKSPACE),
            work_dir=work_dir,
            webserver_url=(env.get("DAGSTER_WEBSERVER_URL") or DEFAULT_WEBSERVER_URL).rstrip("/"),
            bucket=env.get("META_DEPLOYER_BUCKET") or DEFAULT_BUCKET,
            storage_dir=(root / env["META_DEPLOYER_STORAGE_DIR"]).resolve()
            if env.get("META_DEPLOYER_STORAGE_DIR")
            else work_dir / "storage",
            git_token_file=(root / token_file).resolve() if token_file else None,
            git_token_hosts=_token_hosts(env.get("META_DEPLOYER_GIT_TOKEN_HOSTS")),
            git_ssh_key_file=(root / ssh_key).resolve() if ssh_key else None,
            git_known_hosts_file=(root / known_hosts).resolve() if known_hosts else None,
            reload_timeout_s=reload_timeout,
            env=env,
        )

    # Folders inside the git-ignored work area -----------------------------
    @property
    def checkouts_dir(self) -> Path:
        return self.work_dir / "checkouts"

    @property
    def state_dir(self) -> Path:
        return self.work_dir / "state"

    @property
    def locks_dir(self) -> Path:
        return self.work_dir / "locks"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    def checkout_path(self, name: str) -> Path:
        return self.checkouts_dir / name

    def git_token(self) -> str | None:
        """The git token from ``META_DEPLOYER_GIT_TOKEN_FILE``, if set (never logged)."""
        if self.git_token_file is None:
            return None
        try:
            return self.git_token_file.read_text().strip() or None
        except OSError as exc:
            raise SettingsError(f"META_DEPLOYER_GIT_TOKEN_FILE={self.git_token_file}: {exc.strerror}") from None

    def git_auth(self) -> GitAuth:
        """What git may authenticate with, and where (the token is read from its file now)."""
        return GitAuth(self.git_token(), self.git_token_hosts, self.git_ssh_key_file, self.git_known_hosts_file)
