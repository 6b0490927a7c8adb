"""Git: converge a checkout of one branch and pin its commit (GitPython).

An existing checkout is fetched and reset rather than cloned again, under a
file lock, and nothing is fetched at all when the remote head is the commit
already checked out. A token (``META_DEPLOYER_GIT_TOKEN_FILE``) reaches git
through environment configuration, never the command line, and is redacted,
with any credentials in a URL, from every message this module produces. It is
bound to hosts: git gets it only as the per-host configuration
``http.https://<host>/.extraHeader``, only when the URL is https and its host is
in ``META_DEPLOYER_GIT_TOKEN_HOSTS`` (none by default), so a config pointing at
another host, or at plain http://, never receives it. An SSH deploy key is
used only with a pinned known_hosts file and strict host key checking.
"""

from __future__ import annotations

import base64
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from filelock import FileLock, Timeout
from git import Git, GitCommandError, Repo
from git.exc import InvalidGitRepositoryError, NoSuchPathError

from meta_deployer.errors import CloneError
from meta_deployer.settings import GitAuth

_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
REDACTED = "***"


def redact(text: str, secrets: tuple[str | None, ...] = ()) -> str:
    """Remove URL credentials and the given secret values from ``text``."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
            text = text.replace(base64.b64encode(f"x-access-token:{secret}".encode()).decode(), REDACTED)
    return text


def resolve_url(url: str, root: Path, private: tuple[Path, ...] = ()) -> str:
    """Make a relative local path absolute (against ``root``); leave URLs as they are.

    A local source (a path or ``file://``) inside one of the ``private`` folders (the deployer's
    work area: other repos' checkouts, snapshots, records and storage; the Dagster instance) is
    refused: a config could otherwise deploy another team's checkout as its own code.
    """
    if url == "." or url.startswith(("./", "../")):
        url = str((root / url).resolve())
    local = url[len("file://"):] if url.startswith("file://") else url if url.startswith("/") else None
    if local is not None and private:
        resolved = Path(local).resolve()
        for folder in private:
            folder = folder.resolve()
            if resolved == folder or folder in resolved.parents:
                raise CloneError(
                    f"git_url {url!r} points into {folder}, the deployer's own files (other repos' checkouts, "
                    "records, storage or the Dagster instance); give the repository's own URL"
                )
    return url


def token_config_key(url: str, hosts: tuple[str, ...]) -> str | None:
    """The git config key that binds a token to ``url``'s host (``http.https://<host>/.extraHeader``),
    or None when the token must not go there: not https, or a host not in ``hosts``."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not host or host not in hosts:
        return None
    netloc = parts.netloc.rpartition("@")[2].lower()
    return f"http.https://{netloc}/.extraHeader"


def git_env(url: str, auth: GitAuth | None = None) -> dict[str, str]:
    """The environment for one git call against ``url`` (pure): no prompts, the token only as
    per-host configuration when ``url`` may receive it, the SSH key only with pinned host keys."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true"}
    if auth is None:
        return env
    key = token_config_key(url, auth.token_hosts) if auth.token else None
    if key:
        basic = base64.b64encode(f"x-access-token:{auth.token}".encode()).decode()
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0=key, GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}")
    if auth.known_hosts_file is not None:
        ssh = ["ssh", "-o", "BatchMode=yes"]
        if auth.ssh_key_file is not None:
            ssh += ["-i", str(auth.ssh_key_file), "-o", "IdentitiesOnly=yes"]
        ssh += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={auth.known_hosts_file}"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
    return env


def remote_heads(url: str, auth: GitAuth | None = None) -> dict[str, str]:
    """``{branch: commit}`` for every branch of the remote at ``url``."""
    secrets = auth.secrets if auth else ()
    try:
        out = Git().execute(["git", "ls-remote", "--heads", url], env=git_env(url, auth))
    except GitCommandError as exc:
        raise CloneError(f"cannot read the remote {redact(url, secrets)}: {redact(_stderr(exc), secrets)}") from None
    heads = {}
    for line in str(out).splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads[ref.removeprefix("refs/heads/")] = sha
    return heads


def remote_head(url: str, branch: str, auth: GitAuth | None = None) -> str:
    """The commit at the head of ``branch``; CloneError naming the branches when missing."""
    heads = remote_heads(url, auth)
    if branch not in heads:
        known = ", ".join(sorted(heads)) or "none"
        raise CloneError(
            f"branch {branch!r} does not exist in {redact(url, auth.secrets if auth else ())} (branches there: {known}); "
            "fix 'branch' in config.yml or BRANCH=..."
        )
    return heads[branch]


def converge(url: str, branch: str, dest: Path, auth: GitAuth | None = None) -> tuple[str, bool]:
    """Make ``dest`` a clean checkout of ``branch``'s head; return ``(commit, changed)``."""
    with converged(url, branch, dest, auth) as result:
        return result


#: How long a deploy waits for another process's hold on a checkout (a clone of a big repo).
CHECKOUT_LOCK_TIMEOUT_S = 600.0


@contextmanager
def converged(
    url: str, branch: str, dest: Path, auth: GitAuth | None = None, lock_timeout: float = CHECKOUT_LOCK_TIMEOUT_S
) -> Iterator[tuple[str, bool]]:
    """:func:`converge`, then keep the checkout's lock while the caller reads it: nothing else can move
    ``dest`` to another commit meanwhile, so what the caller reads is the commit it is given.

    CloneError when another process holds the lock for more than ``lock_timeout`` seconds."""
    with _checkout_lock(dest, lock_timeout):
        yield _converge(url, branch, dest, auth)


@contextmanager
def _checkout_lock(dest: Path, timeout: float = CHECKOUT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold ``dest``'s lock (no other process moves the checkout meanwhile); CloneError after ``timeout`` s."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(dest) + ".lock")
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise CloneError(
            f"the checkout {dest} is held by another process (a fetch or a read) for more than "
            f"{timeout:g} s; nothing was read, the next attempt tries again"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _git_failure(exc: GitCommandError, url: str, auth: GitAuth | None, what: str) -> CloneError:
    """A failed git command as a CloneError naming the command, the URL and ``what`` (secrets redacted)."""
    secrets = auth.secrets if auth else ()
    return CloneError(
        f"git {exc.command[1] if len(exc.command) > 1 else ''} failed for {redact(url, secrets)} "
        f"{what}: {redact(_stderr(exc), secrets)}"
    )


def _converge(url: str, branch: str, dest: Path, auth: GitAuth | None) -> tuple[str, bool]:
    head = remote_head(url, branch, auth)
    repo = _existing(dest, url)
    try:
        if repo is not None:
            if repo.head.is_valid() and repo.head.commit.hexsha == head and not repo.is_dirty(untracked_files=True):
                return head, False
            with repo.git.custom_environment(**git_env(url, auth)):
                repo.git.fetch("--depth", "1", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
                repo.git.checkout("--force", "-B", branch, f"refs/remotes/origin/{branch}")
                repo.git.clean("-ffd")
        else:
            repo = _fresh_clone(url, branch, dest, auth)
        return repo.head.commit.hexsha, True
    except GitCommandError as exc:
        raise _git_failure(exc, url, auth, f"branch {branch!r}") from None


def converge_at(url: str, branch: str, commit: str, dest: Path, auth: GitAuth | None = None) -> tuple[str, bool]:
    """Make ``dest`` a clean checkout of ``commit`` (a full hash, an earlier deployment of ``branch``: a
    rollback); return ``(commit, changed)``. The commit is fetched by hash, else the branch's history."""
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise CloneError(f"{commit!r} is not a full commit hash (40 lowercase hex digits)")
    with _checkout_lock(dest):
        repo = _existing(dest, url)
        try:
            if repo is not None and repo.head.is_valid() and repo.head.commit.hexsha == commit \
                    and not repo.is_dirty(untracked_files=True):
                return commit, False
            if repo is None:
                repo = _fresh_clone(url, branch, dest, auth)
            with repo.git.custom_environment(**git_env(url, auth)):
                try:
                    repo.git.fetch("--depth", "1", "origin", commit)
                except GitCommandError:  # a server that serves branch tips only: the branch's whole history
                    repo.git.fetch("--unshallow", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
                repo.git.checkout("--force", "-B", branch, commit)
                repo.git.clean("-ffd")
            return repo.head.commit.hexsha, True
        except GitCommandError as exc:
            raise _git_failure(exc, url, auth, f"commit {commit[:12]}") from None


def _existing(dest: Path, url: str) -> Repo | None:
    """The checkout at ``dest`` if it is a git checkout of ``url``; otherwise clear it."""
    try:
        repo = Repo(dest)
        if repo.remotes and repo.remotes.origin.url == url:
            return repo
    except (InvalidGitRepositoryError, NoSuchPathError, ValueError, AttributeError):
        pass
    if dest.exists():
        shutil.rmtree(dest)
    return None


def _fresh_clone(url: str, branch: str, dest: Path, auth: GitAuth | None) -> Repo:
    """Clone into a temporary sibling, then move it into place (never half a checkout)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        Repo.clone_from(url, tmp, env=git_env(url, auth), branch=branch, single_branch=True, depth=1, no_tags=True)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Repo(dest)


def _stderr(exc: GitCommandError) -> str:
    text = (exc.stderr or "").strip() or str(exc)
    return " ".join(line.strip() for line in text.splitlines() if line.strip())[-800:]
