"""Check a checkout before anything is built or served from it: it holds only its own files.

A symbolic link committed to a repository is checked out as a link, and whatever
later reads through it (the code server importing a definitions file, a build
copying a working directory, an error message quoting a file) reads the file it
points at. A link whose target resolves outside the repository root (an absolute
target, a ``..`` escape, or a chain of links that ends outside) is refused; links
inside the repository are fine. The walk never follows links, so it stays inside
the checkout and ends.
"""

from __future__ import annotations

import os
from pathlib import Path

from meta_deployer.errors import UnsafeRepositoryError

#: How many offending links an error lists (the count says how many more there are).
MAX_LINKS_SHOWN = 20


def escaping_links(root: Path) -> list[tuple[str, str]]:
    """``(link relative to root, its target as written)`` for every symbolic link under ``root``
    whose target, fully resolved, lies outside ``root``; ``.git`` is not searched."""
    root = Path(os.path.realpath(root))
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if dirpath == str(root) and ".git" in dirnames:
            dirnames.remove(".git")
        for entry in sorted((*dirnames, *filenames)):
            path = os.path.join(dirpath, entry)
            if not os.path.islink(path):
                continue
            target = Path(os.path.realpath(path))
            if target != root and not target.is_relative_to(root):
                found.append((os.path.relpath(path, root), os.readlink(path)))
    return sorted(found)


def check_links(root: Path) -> None:
    """Raise UnsafeRepositoryError naming each link under ``root`` that leaves it."""
    found = escaping_links(root)
    if not found:
        return
    shown = ", ".join(f"{link!r} -> {target!r}" for link, target in found[:MAX_LINKS_SHOWN])
    more = f" and {len(found) - MAX_LINKS_SHOWN} more" if len(found) > MAX_LINKS_SHOWN else ""
    raise UnsafeRepositoryError(
        f"repository {root.name}: symbolic links that leave the repository: {shown}{more}; a location serves "
        "only the repository's own files: commit the file itself, or point the link at a path inside the repository"
    )
