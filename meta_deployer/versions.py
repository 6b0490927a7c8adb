"""The Dagster release family, pinned once (``pyproject.toml``), and the runtime package shipped to locations.

``pyproject.toml`` is the one place that pins ``dagster``, ``dagster-aws`` and
the rest of the family; everything else (the dev platform's virtualenvs, the
image template, the benchmarks) asks :func:`pin` for the version, which reads
the installed distribution's own requirements (``importlib.metadata``), or the
``pyproject.toml`` beside this package when it runs from a source tree.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "meta-deployer"
RUNTIME_PACKAGE = "meta_deployer_runtime"
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!-]+)\s*$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def pins() -> dict[str, str]:
    """Every ``name==version`` requirement of meta_deployer itself (extras left out)."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        requirements = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    else:
        requirements = [r for r in metadata.requires(DISTRIBUTION) or [] if ";" not in r]
    found = {}
    for requirement in requirements:
        match = _PIN.match(requirement)
        if match:
            found[_normal(match.group(1))] = match.group(2)
    return found


def pin(name: str) -> str:
    """The pinned version of ``name`` (``dagster``, ``dagster-aws``, ...); KeyError when it is not pinned."""
    return pins()[_normal(name)]


def requirement(name: str) -> str:
    """``name==<pinned version>``."""
    return f"{name}=={pin(name)}"


def runtime_package() -> Path:
    """The folder of the ``meta_deployer_runtime`` package: what ships into every location."""
    spec = importlib.util.find_spec(RUNTIME_PACKAGE)
    assert spec is not None and spec.origin is not None, f"{RUNTIME_PACKAGE} is not importable"
    return Path(spec.origin).resolve().parent


#: The packages every base image holds (besides the runtime package): Dagster and what the
#: production instance's classes need (S3 storage and compute logs, Postgres storage).
BASE_PACKAGES = ("dagster", "dagster-aws", "dagster-postgres")


def dagster_family(spec: object | None = None) -> str:
    """The Dagster release family a repo's location runs (``1.13`` for ``dagster==1.13.27``).

    The one place that answers "which family does this repo use": today every repo gets the
    deployer's pinned family (``spec`` is accepted so that this can become per repo).
    """
    major, minor, *_ = pin("dagster").split(".")
    return f"{major}.{minor}"


def family_requirements(family: str) -> tuple[str, ...]:
    """``name==version`` of :data:`BASE_PACKAGES` for ``family``; ValueError for a family not pinned here."""
    if family != dagster_family():
        raise ValueError(f"Dagster family {family!r} is not supported here; supported: {dagster_family()}")
    return tuple(requirement(name) for name in BASE_PACKAGES)
