"""A real git repository on disk for tests (no network: file:// URLs)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": "/usr/bin:/bin:/usr/local/bin",
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class GitRemote:
    path: Path
    branch: str

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    @classmethod
    def create(cls, path: Path, files: dict[str, str], branch: str = "main") -> "GitRemote":
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", branch)
        remote = cls(path, branch)
        remote.commit(files, "initial")
        return remote

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Write (or delete, with None) files and commit; return the new SHA."""
        for rel, text in files.items():
            target = self.path / rel
            if text is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")
