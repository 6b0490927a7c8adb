"""Which Dagster release a repository asks for: one answer for every platform.

The ``dev`` platform installs what this resolves; the image builders (``images.py``) build a
templated repo ``FROM`` the base image of the release found here. Both read the repo's dependency
files the same way:

- an exact static pin (``dagster==1.11.16`` in requirements.txt or a static pyproject.toml) is the
  answer, with no resolver run (:func:`static_dagster_pin`);
- otherwise the requirements are resolved with ``uv pip compile`` (:func:`compile_requirements`), run
  without the deployer's secrets in its environment (it reads what the repo names, and may run its
  ``setup.py``); a dagster pulled in by another package (``dagster-dbt==0.27.5``) counts too;
- a repo whose requirements name no dagster at all gets the deployer's own release (``pyproject.toml``).

Then :func:`requested_release` checks the window (``versions.check_supported``): a release outside it
fails here, before anything is installed or built.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from meta_deployer import versions
from meta_deployer.errors import BuildError
from meta_deployer.gitops import redact
from meta_deployer_runtime.contract import without_deployer_secrets

COMPILE_TIMEOUT_S = 300
_TAIL_LINES = 30
_EXACT = re.compile(r"^\s*dagster\s*(?:\[[^\]]*\])?\s*===?\s*([0-9][A-Za-z0-9.+!-]*)\s*(?:;.*)?$", re.IGNORECASE)
_PYTHON_IMAGE = re.compile(r"(?:^|/)python:(\d+\.\d+)")


def normal(name: str) -> str:
    """A distribution name normalized (PEP 503): ``Dagster_AWS`` -> ``dagster-aws``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def uv(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """Run uv without the deployer's secrets in its environment, never downloading a Python."""
    from uv import find_uv_bin

    env = {**without_deployer_secrets(os.environ), "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run([find_uv_bin(), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def compile_requirements(
    files: Sequence[Path], what: str, *, python: str | None = None, python_version: str | None = None,
    secrets: Iterable[str | None] = (),
) -> dict[str, str]:
    """``files`` (requirements.txt, pyproject.toml, setup.py) resolved: ``{normalized name: version}``.

    ``python``: the interpreter to resolve for (default: this one); ``python_version`` (``3.12``)
    instead, for an image's Python. BuildError naming ``what`` when they cannot be resolved.
    """
    if not files:
        return {}
    target = ["--python-version", python_version] if python_version else ["--python", python or sys.executable]
    try:
        done = uv("pip", "compile", "--quiet", "--no-header", "--no-annotate", *target,
                  *(str(f) for f in files), timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BuildError(f"resolving the dependencies of {what} took over {COMPILE_TIMEOUT_S}s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-_TAIL_LINES:])
        raise BuildError(
            f"the dependencies of {what} cannot be resolved (check its requirements.txt or "
            f"pyproject.toml):\n{redact(tail, tuple(secrets))}"
        )
    pinned = {}
    for line in done.stdout.splitlines():
        name, sep, version = line.split(";")[0].split("#")[0].strip().partition("==")
        if sep:
            pinned[normal(name.split("[")[0].strip())] = version.strip()
    return pinned


def static_dagster_pin(requirements: Iterable[str]) -> str | None:
    """The release of an exact ``dagster==X`` among requirement lines, else None."""
    for line in requirements:
        match = _EXACT.match(line.split(" #", 1)[0])
        if match:
            return match.group(1)
    return None


def requested_release(where: str, resolved: Mapping[str, str]) -> str:
    """The dagster release of ``resolved`` (the deployer's own when it names none), checked against the
    window: UnsupportedDagsterVersion naming ``where``, the release, the window and the fix."""
    return versions.check_supported(where, resolved.get("dagster", versions.pin("dagster")))


def release_of_lines(
    name: str, requirements: Sequence[str], base_image: str, secrets: Iterable[str | None] = ()
) -> str:
    """The dagster release a templated image of repo ``name`` gets from its requirement lines (what
    ``images._dependency_plan`` collected), resolved for the Python of ``base_image`` when its name
    says (``python:3.12-slim``); checked against the window."""
    where = f"{name} (its requirements)"
    pinned = static_dagster_pin(requirements)
    if pinned is not None:
        return requested_release(where, {"dagster": pinned})
    if not requirements:
        return requested_release(where, {})
    match = _PYTHON_IMAGE.search(base_image)
    with tempfile.TemporaryDirectory(prefix="meta-deployer-resolve-") as folder:
        path = Path(folder) / "requirements.txt"
        path.write_text("\n".join(requirements) + "\n")
        resolved = compile_requirements(
            [path], name, python_version=match.group(1) if match else None, secrets=secrets
        )
    return requested_release(where, resolved)


# -- the Python an image is built on -------------------------------------------------------------

#: The Pythons a templated image may be built on, newest first (official ``python:<X.Y>-<variant>``
#: images; the Dagster releases of the window support them all).
IMAGE_PYTHONS = ("3.13", "3.12", "3.11", "3.10")


def _satisfies(specifier, minor: str) -> bool:
    """Whether some release of Python ``minor`` (3.12.0 ... 3.12.49) is in ``specifier``."""
    return any(specifier.contains(f"{minor}.{patch}") for patch in range(50))


def python_image_for(name: str, wanted: str | None, where: str, base_image: str) -> str:
    """The Python image a templated image of repo ``name`` is built on: ``base_image``
    (``META_DEPLOYER_BASE_IMAGE``) when its Python satisfies the project's ``requires-python``
    (``wanted``, read from ``where``), else the same official image of the newest Python in
    :data:`IMAGE_PYTHONS` that does. BuildError, before anything is built, when none does (or
    ``wanted`` is not a version specifier). An image whose name says no Python version is kept."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if wanted is None:
        return base_image
    try:
        specifier = SpecifierSet(wanted)
    except InvalidSpecifier:
        raise BuildError(f"{name}: requires-python {wanted!r} in {where} is not a version specifier") from None
    match = _PYTHON_IMAGE.search(base_image)
    if match is None:
        return base_image
    if _satisfies(specifier, match.group(1)):
        return base_image
    for minor in IMAGE_PYTHONS:
        if _satisfies(specifier, minor):
            start, end = match.span(1)
            return base_image[:start] + minor + base_image[end:]
    raise BuildError(
        f"{name} requires Python {wanted} (requires-python in {where}), and no image Python satisfies it: "
        f"images are built on {base_image} (META_DEPLOYER_BASE_IMAGE) or the same image of Python "
        f"{', '.join(reversed(IMAGE_PYTHONS))}. Nothing was built or served. Relax requires-python, or set "
        "META_DEPLOYER_BASE_IMAGE to a Python image that satisfies it."
    )
