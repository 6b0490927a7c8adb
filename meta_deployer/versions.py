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


def family_of(release: str) -> str:
    """The release family (minor) of a dagster release: ``1.13`` for ``1.13.27``."""
    major, minor, _ = parse(release)
    return f"{major}.{minor}"


def base_requirements(release: str) -> tuple[str, ...]:
    """``name==version`` of :data:`BASE_PACKAGES` for a base image holding dagster ``release``: the
    release itself and the dagster-aws / dagster-postgres that pair with it (:func:`library_version`).

    ValueError for a release outside the supported window."""
    if not is_supported(release):
        raise ValueError(f"dagster {release!r} is not supported here; supported: {window()}")
    return tuple(
        f"{name}=={release if name == 'dagster' else library_version(release)}" for name in BASE_PACKAGES
    )


# -- the supported window of Dagster releases a location may run ---------------------------------
#
# Every location runs the Dagster release its repository asks for (its own pins on ``dev``, whatever
# its image holds on ``docker``/``ecs``), as long as that release is in the window: the minor of the
# family pinned above (the current one) and the SUPPORTED_PREVIOUS_MINORS before it. The runtime
# (``meta_deployer_runtime``) is tested against one release of each (TESTED_RELEASES).

#: How many minor releases before the current one stay supported.
SUPPORTED_PREVIOUS_MINORS = 3
#: The release of each older supported minor the runtime's tests run against (the current minor's is the pin).
_TESTED_OLDER = {"1.10": "1.10.21", "1.11": "1.11.16", "1.12": "1.12.22"}
#: dagster 1.X.N pairs with dagster-aws 0.(X+16).N (and dagster-postgres, dagster-docker alike).
_LIBRARY_MINOR_OFFSET = 16
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


def parse(version: str) -> tuple[int, int, int]:
    """``"1.10.5"`` -> ``(1, 10, 5)`` (pre-release and local suffixes ignored); ValueError otherwise."""
    match = _VERSION.match(version.strip())
    if not match:
        raise ValueError(f"{version!r} is not a Dagster release number (expected 1.<minor>.<patch>)")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def current_minor() -> tuple[int, int]:
    """The minor of the pinned family, e.g. ``(1, 13)``."""
    major, minor, _ = parse(pin("dagster"))
    return major, minor


def supported_minors() -> list[str]:
    """The supported minors, oldest first: ``["1.10", "1.11", "1.12", "1.13"]``."""
    major, minor = current_minor()
    return [f"{major}.{m}" for m in range(max(0, minor - SUPPORTED_PREVIOUS_MINORS), minor + 1)]


def window() -> str:
    """The window as people write it: ``1.10 to 1.13``."""
    minors = supported_minors()
    return f"{minors[0]} to {minors[-1]}"


#: The variable telling the validator (``meta_deployer_runtime.validate``, which cannot import this module)
#: the supported minors; the two spellings are checked equal in tests/test_runtime_versions.py.
WINDOW_ENV = "META_DEPLOYER_DAGSTER_WINDOW"


def window_env() -> dict[str, str]:
    """``{WINDOW_ENV: "1.10,1.11,1.12,1.13"}``: what every validation adds to the location's environment."""
    return {WINDOW_ENV: ",".join(supported_minors())}


def is_supported(version: str) -> bool:
    """True when ``version`` (a dagster release) is in the window."""
    try:
        major, minor, _ = parse(version)
    except ValueError:
        return False
    return f"{major}.{minor}" in supported_minors()


def tested_releases() -> dict[str, str]:
    """One exact dagster release per supported minor, the runtime's tests run against each."""
    releases = {**_TESTED_OLDER, "{}.{}".format(*current_minor()): pin("dagster")}
    return {minor: releases[minor] for minor in supported_minors()}


def library_version(dagster_version: str) -> str:
    """The dagster-aws (dagster-postgres, dagster-docker...) release that pairs with ``dagster_version``."""
    major, minor, patch = parse(dagster_version)
    if major != 1:
        raise ValueError(f"no library pairing is known for dagster {dagster_version}")
    return f"0.{minor + _LIBRARY_MINOR_OFFSET}.{patch}"


def unsupported_message(where: str, version: str | None) -> str:
    """What to say when ``where`` (a repo, an image) holds dagster ``version`` (None: none at all)."""
    found = f"dagster {version}" if version else "no dagster at all"
    return (
        f"{where} uses {found}, which is outside the Dagster releases meta_deployer supports: "
        f"{window()} (the current minor and the {SUPPORTED_PREVIOUS_MINORS} before it). Nothing was deployed. "
        f"To fix it, pin a supported release in the repository, for example `dagster=={pin('dagster')}` "
        f"in its requirements.txt or pyproject.toml (or install one in its Dockerfile), and push a new commit."
    )


def check_supported(where: str, version: str | None) -> str:
    """``version`` when it is in the window; else UnsupportedDagsterVersion naming it, the window and the fix."""
    from meta_deployer.errors import UnsupportedDagsterVersion

    if version is None or not is_supported(version):
        raise UnsupportedDagsterVersion(unsupported_message(where, version))
    return version
