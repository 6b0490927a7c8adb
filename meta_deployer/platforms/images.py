"""Images: build, validate and push a repo's code-location image (the build and publish steps).

Shared by the ``docker`` and ``ecs`` platforms::

    build_image(spec, checkout, settings, log) -> Artifact(kind="image")
        plan the build (the repo's own Dockerfile, or our template)
        -> immutable tag <registry>/dagster/<name>:<commit12>-<hash12>
        -> the registry (or, with no registry, the engine) has it already? done: the no-op fast path
        -> the builder (``META_DEPLOYER_BUILDER``, a :class:`Builder`) builds it:
           ``docker`` (:class:`DockerBuilder`): through the engine at DOCKER_HOST, streaming every line to ``log``
               -> add the runtime layer: meta_deployer's runtime modules on PYTHONPATH
               -> validate: load the definitions in a throw-away container with no network
               -> only then tag it with its immutable tag
           ``codebuild`` (``platforms/codebuild.py``): the same plan, run by AWS CodeBuild as a
               buildspec (build, runtime layer, validate, then tag and push)
    push_image(spec, artifact, registry, log) -> Published (with the pushed digest; a no-op
        when the builder pushed already)

The tag's hash covers everything that goes into the image besides the commit:
the Dockerfile text (ours, rendered, or the repo's), the generated
dependency list, the base image and the template version. An image carries
its final tag only once its definitions loaded, so "the tag exists" means
"built and validated"; that is what makes skipping the build and the push safe.

**The runtime layer.** Every process that opens the Dagster instance loads the
classes in dagster.yaml, and run workers execute inside the repo's container:
the per-repo compute log manager (``meta_deployer_runtime.compute_logs``) must import
there. So a last small layer copies the runtime package folder (``meta_deployer_runtime``,
which imports only Dagster and the standard library) to ``/opt/meta_deployer/pylib``
and puts it on ``PYTHONPATH``, whichever
Dockerfile built the image. When storage is in S3 (a bucket is set, or the
ecs platform), templated images also get ``dagster-aws`` (and on ecs
``dagster-postgres``), which the production instance loads; a repo's own
Dockerfile must install those itself.

Whichever Dockerfile built it, a container serves the location named by the
spec through :func:`grpc_command` (code source paths are relative to the
image's ``WORKDIR``, which is the repository root for our template and, by
convention, for a repo's own Dockerfile).

Settings (``settings.images``: :class:`meta_deployer.settings.ImageSettings`):

- ``META_DEPLOYER_REGISTRY``: where images are pushed, e.g. ``127.0.0.1:5000``
  or ``123456789012.dkr.ecr.us-east-1.amazonaws.com``. Unset: images stay on
  the local engine (docker platform) or go to the account's ECR (ecs platform).
- ``META_DEPLOYER_BASE_IMAGE``: base of the template (default ``python:3.12-slim``).
- ``META_DEPLOYER_BUILD_TIMEOUT`` / ``META_DEPLOYER_VALIDATE_TIMEOUT``: seconds.
- ``DOCKER_HOST``: the engine (the docker SDK's own setting).

This is the one module besides ``platforms/docker.py`` that talks to the
Docker engine; boto3 (ECR only) is imported and its client made on use.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
import tomllib
from collections import deque
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from meta_deployer import naming
from meta_deployer.errors import (
    AwsOperationError,
    ImageBuildError,
    MetaDeployerError,
    PublishError,
    Retryable,
    ValidationFailed,
)
from meta_deployer.model import Artifact, Checkout, Log, Published
from meta_deployer.platforms.location import (
    code_source_env,
    container_workdir,
    grpc_command,
    location_env,
    mounted_code_env,  # noqa: F401 - platforms/docker.py calls it through this module
    validating_env,
    storage_env,
    validate_command,
    validation_outcome,
)
from meta_deployer.settings import ECR_HOST, ImageSettings, is_ecr
from meta_deployer.spec import RepoSpec
from meta_deployer import versions
from meta_deployer.platforms import resolve
from meta_deployer.versions import runtime_package

if TYPE_CHECKING:
    import docker

#: Port the code server listens on inside a container (bridge networking, ECS).
#: Installed into templated images when the repo's own dependencies name no dagster.
DAGSTER_REQUIREMENT = versions.requirement("dagster")
#: Bump when the template or the context layout changes: it is part of every tag's hash.
TEMPLATE_VERSION = "2"
RUNTIME_PYLIB = "/opt/meta_deployer/pylib"
#: Read timeout of one engine API call; builds stream, so this bounds silence, not duration.
ENGINE_TIMEOUT_S = 900
TAIL_LINES = 30
TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "Dockerfile"
#: The templates of the base images and of templated images built on them.
BASE_TEMPLATE_PATH = TEMPLATE_PATH.with_name("Dockerfile.base")
ONBASE_TEMPLATE_PATH = TEMPLATE_PATH.with_name("Dockerfile.onbase")
#: The repository of the base images (``<registry>/dagster/base:<release>-<hash12>``): the repo name
#: ``base`` is reserved for it (naming.RESERVED_NAMES).
BASE_NAME = "base"
#: Tags of dependency images (mounted code): ``deps-<hash24>``, the hash of everything but the code.
DEPS_TAG_PREFIX = "deps-"
#: A repo's dependency files: the only files of the checkout a dependency image is built from.
DEPENDENCY_FILES = ("requirements.txt", "pyproject.toml", "setup.py", "setup.cfg", ".dockerignore")
CONTEXT_DIR = ".meta_deployer"
LABEL_PREFIX = "meta-deployer."
VALIDATE_DAGSTER_HOME = "/tmp/meta-deployer-validate"

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)\Z")
#: Legacy-builder bookkeeping lines, left out of the run log.
_NOISE = (" ---> ", "Removing intermediate container")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class EngineUnavailable(MetaDeployerError, Retryable):
    """The Docker engine did not answer (not started, or DOCKER_HOST points elsewhere)."""


# -- settings ------------------------------------------------------------------
# ImageSettings (registry, base image, timeouts; ECR or not, extra requirements) is read with
# every other setting in meta_deployer.settings: ``Settings.from_env(env).images``.


# -- the engine ----------------------------------------------------------------


def docker_client(env: Mapping[str, str] | None = None) -> docker.DockerClient:
    """A client of the engine named by ``DOCKER_HOST`` in ``env``; raises EngineUnavailable if it does not answer."""
    import docker
    import requests

    env = dict(os.environ if env is None else env)
    where = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(environment=env, timeout=ENGINE_TIMEOUT_S)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineUnavailable(
            f"the Docker engine at {where} does not answer ({exc.__class__.__name__}): start it "
            "(in CI and here: `source .ci/services.sh`) or set DOCKER_HOST to a running engine"
        ) from exc
    return client


def tail(lines: Iterable[str], count: int = TAIL_LINES) -> str:
    """The last ``count`` non-empty lines, joined."""
    kept = [line for line in lines if line.strip()]
    return "\n".join(kept[-count:])


# -- planning a build (reads the checkout; no engine) ----------------------------


@dataclass(frozen=True)
class BuildPlan:
    """What goes into an image besides the commit; its hash is half of the tag."""

    own_dockerfile: bool
    dockerfile: str  # path inside the build context
    dockerfile_text: str
    extra_files: tuple[tuple[str, str], ...]  # generated files added to the context
    files: tuple[str, ...]  # files of the checkout sent as context
    base_image: str | None
    notes: tuple[str, ...] = ()
    runtime: tuple[tuple[str, str], ...] = ()  # the runtime layer's files
    mounted: bool = False  # a dependency image: the code comes from the commit's archive at start-up

    def content_hash(self, base_image_id: str | None = None) -> str:
        data = {
            "mounted": self.mounted,
            "template_version": TEMPLATE_VERSION,
            "runtime": list(self.runtime),
            "dockerfile": self.dockerfile,
            "dockerfile_text": self.dockerfile_text,
            "extra_files": list(self.extra_files),
            "base_image": self.base_image,
            "base_image_id": base_image_id,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def tracked_files(root: Path) -> list[str]:
    """The files of the checked-out commit (``git ls-files``): no .git, no untracked leftovers."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached"],
            check=True, capture_output=True, timeout=120,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImageBuildError(f"cannot list the files of the checkout {root}: {exc}") from exc
    return [f for f in out.decode().split("\0") if f and (root / f).exists()]


def _context_files(root: Path) -> list[str]:
    from docker.utils.build import exclude_paths

    tracked = tracked_files(root)
    ignore_file = root / ".dockerignore"
    patterns = [".git"]
    if ignore_file.is_file():
        patterns += [
            line.strip() for line in ignore_file.read_text().splitlines() if line.strip() and not line.startswith("#")
        ]
    kept = set(exclude_paths(str(root), patterns))
    return sorted(f for f in tracked if f in kept)


def _requirements_lines(path: Path, notes: list[str]) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e", "--editable", "-r", "--requirement", "-c", "--constraint", ".", "/", "file:")):
            notes.append(f"{path.name}: {line!r} refers to local files; it is installed with the code, not in the dependency layer")
            continue
        lines.append(line)
    return lines


def _pyproject(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImageBuildError(f"{path.name} is not valid TOML: {exc}") from None


def runtime_files() -> tuple[tuple[str, str], ...]:
    """The runtime layer's files: the ``meta_deployer_runtime`` package folder, (path in the context, text)."""
    package = runtime_package()
    return tuple(
        (f"{package.name}/{path.relative_to(package).as_posix()}", path.read_text())
        for path in sorted(package.rglob("*.py"))
        if "__pycache__" not in path.parts
    )


def runtime_dockerfile(image: str) -> str:
    """The runtime layer on top of ``image``: the runtime package on PYTHONPATH."""
    name = runtime_package().name
    return (
        f"FROM {image}\n"
        f"COPY {name} {RUNTIME_PYLIB}/{name}\n"
        f"ENV PYTHONPATH={RUNTIME_PYLIB}${{PYTHONPATH:+:$PYTHONPATH}}\n"
    )


def _dependency_plan(
    spec: RepoSpec, root: Path, extra: tuple[str, ...] = (), on_base: bool = False, release: str | None = None
) -> tuple[list[str], str, list[str]]:
    """(requirement lines for the dependency layer, the command installing the code, notes).

    ``on_base``: the image builds FROM the base image of its release, which has Dagster, dagster-aws and
    dagster-postgres already. ``release``: the dagster release the repo resolves to
    (:func:`templated_release`); the instance's packages in ``extra`` (``dagster-*``) are paired with it."""
    notes: list[str] = []
    dirs = _project_dirs(spec, root)
    reqs: list[str] = []
    install = "true"
    for rel in dirs:
        folder = root / rel
        if (folder / "requirements.txt").is_file():
            reqs += _requirements_lines(folder / "requirements.txt", notes)
        pyproject = folder / "pyproject.toml"
        project = _pyproject(pyproject) if pyproject.is_file() else {}
        static = "project" in project and "dependencies" not in project["project"].get("dynamic", [])
        if static:
            reqs += list(project["project"].get("dependencies", []))
            build_requires = project.get("build-system", {}).get("requires") or ["setuptools>=64", "wheel"]
            reqs += list(build_requires)
            install = f"pip install --no-deps --no-build-isolation -e {rel}"
        elif pyproject.is_file() or (folder / "setup.py").is_file():
            notes.append(f"{rel}: dependencies are not static in pyproject.toml; they install with the code")
            install = f"pip install -e {rel}"
    names = {resolve.normal(m.group(1)) for m in map(_REQ_NAME.match, reqs) if m}
    if "dagster" not in names and not on_base:
        reqs.insert(0, f"dagster=={release}" if release else DAGSTER_REQUIREMENT)
    for requirement in extra:
        match = _REQ_NAME.match(requirement)
        if not match:
            continue
        name = resolve.normal(match.group(1))
        if name in names or (on_base and name in versions.BASE_PACKAGES):
            continue
        if release and name.startswith("dagster-"):
            requirement = f"{name}=={versions.library_version(release)}"
        reqs.append(requirement)
    seen: set[str] = set()
    unique = [r for r in reqs if not (r in seen or seen.add(r))]
    return unique, install, notes


#: At most this much of a pyproject.toml is read for its requires-python.
_PYPROJECT_MAX_BYTES = 1_000_000


def requires_python(spec: RepoSpec, root: Path) -> tuple[str | None, str]:
    """The ``requires-python`` of the location's own project (its working directory, else the nearest
    folder above it with a pyproject.toml, up to the repository root) and the file it is from."""
    root = root.resolve()
    folder = (root / (spec.working_directory or ".")).resolve()
    while folder.is_relative_to(root):
        path = folder / "pyproject.toml"
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= _PYPROJECT_MAX_BYTES:
            try:
                value = tomllib.loads(path.read_text()).get("project", {}).get("requires-python")
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, AttributeError):
                value = None
            if isinstance(value, str) and value.strip():
                return value.strip()[:200], str(path.relative_to(root))
        if folder == root:
            break
        folder = folder.parent
    return None, ""


def python_settings(spec: RepoSpec, root: Path, settings: ImageSettings, log: Log) -> ImageSettings:
    """``settings`` with the Python image a templated image of ``spec`` is built on
    (:func:`meta_deployer.platforms.resolve.python_image_for`); BuildError when none satisfies it."""
    wanted, where = requires_python(spec, root)
    image = resolve.python_image_for(spec.name, wanted, where, settings.base_image)
    if image == settings.base_image:
        return settings
    log(f"{spec.name} requires Python {wanted} ({where}): its image is built on {image}")
    return settings.model_copy(update={"base_image": image})


def templated_release(spec: RepoSpec, root: Path, settings: ImageSettings) -> str:
    """The dagster release a templated image of ``spec`` gets: what its dependency files ask for
    (:func:`meta_deployer.platforms.resolve.release_of_lines`); UnsupportedDagsterVersion outside the window."""
    reqs, _, _ = _dependency_plan(spec, root, (), on_base=True)
    return resolve.release_of_lines(spec.name, reqs, settings.base_image)


def wants_mounting(spec: RepoSpec, root: Path) -> bool:
    """Whether ``spec``'s code is mounted (see README): ``code_mounting`` when set, else on for templated
    repos and off for a repo with its own Dockerfile."""
    if spec.code_mounting is not None:
        return spec.code_mounting
    return not (root / "Dockerfile").is_file()


def _project_dirs(spec: RepoSpec, root: Path) -> list[str]:
    """The folders whose dependency files an image installs, root first: the repository root, and the
    location's own project: its working directory, else the nearest folder above it (below the root)
    with a dependency file (a working directory ``proj/src`` installs ``proj/pyproject.toml``)."""
    dirs = ["."]
    if not spec.working_directory or spec.working_directory == ".":
        return dirs
    rel = posixpath.normpath(spec.working_directory)
    candidate = rel
    while candidate not in (".", ""):
        folder = root / candidate
        if not folder.is_symlink() and any((folder / f).is_file() for f in DEPENDENCY_FILES if f != ".dockerignore"):
            return dirs + [candidate]
        candidate = posixpath.dirname(candidate)
    return dirs + [rel]


def _dependency_files(spec: RepoSpec, root: Path) -> tuple[tuple[str, str], ...]:
    folders = _project_dirs(spec, root)
    found = []
    for folder in folders:
        for name in DEPENDENCY_FILES:
            rel = posixpath.normpath(posixpath.join(folder, name))
            if (root / rel).is_file():
                found.append((rel, (root / rel).read_text()))
    return tuple(found)


def plan_build(
    spec: RepoSpec, checkout: Checkout, settings: ImageSettings, *, base: str | None = None, mount: bool = False,
    release: str | None = None,
) -> BuildPlan:
    """Decide the Dockerfile and the context for ``spec`` at ``checkout`` (reads files; may resolve).

    ``base``: the base image of the repo's release to build templated repos FROM (None: the plain
    template on ``META_DEPLOYER_BASE_IMAGE``). ``mount``: the platform can mount code, so a repo that
    wants it (:func:`wants_mounting`) gets a dependency image, built from its dependency files only.
    ``release``: the repo's dagster release (:func:`templated_release`, found when not given).
    """
    root = checkout.path
    mounted = mount and wants_mounting(spec, root)
    if (root / "Dockerfile").is_file():
        if mounted:
            deps = _dependency_files(spec, root)
            return BuildPlan(
                own_dockerfile=True,
                dockerfile="Dockerfile",
                dockerfile_text=(root / "Dockerfile").read_text(),
                extra_files=deps,
                files=(),
                base_image=None,
                notes=("code_mounting: the Dockerfile builds from the dependency files only "
                       f"({', '.join(p for p, _ in deps) or 'none found'}); the code is mounted at start-up",),
                runtime=runtime_files(),
                mounted=True,
            )
        files = _context_files(root)
        return BuildPlan(
            own_dockerfile=True,
            dockerfile="Dockerfile",
            dockerfile_text=(root / "Dockerfile").read_text(),
            extra_files=(),
            files=tuple(f for f in files if f != "Dockerfile"),
            base_image=None,
            runtime=runtime_files(),
        )
    release = release or templated_release(spec, root, settings)
    reqs, install, notes = _dependency_plan(
        spec, root, settings.extra_requirements, on_base=base is not None, release=release
    )
    if mounted and install.startswith("pip install -e"):
        # Dependencies that only an install of the code can resolve (setup.py, dynamic pyproject).
        notes.append("the code must be installed to resolve its dependencies, so it is built into the image (no mounting)")
        mounted = False
    if base is not None:
        code = "" if mounted else f"\n# The code (tracked files of the deployed commit, minus .dockerignore).\nCOPY . /app\nRUN {install}\n"
        text = (
            ONBASE_TEMPLATE_PATH.read_text()
            .replace("{{base_image}}", base)
            .replace("{{code}}", code)
            .replace("{{command}}", json.dumps(grpc_command(spec)))
        )
    else:
        if mounted:
            notes.append("this builder has no base images, so the code is built into the image (no mounting)")
            mounted = False
        text = (
            TEMPLATE_PATH.read_text()
            .replace("{{base_image}}", settings.base_image)
            .replace("{{install_code}}", install)
            .replace("{{command}}", json.dumps(grpc_command(spec)))
        )
    requirements = "# Generated by meta_deployer from the repo's dependency files.\n" + "\n".join(reqs) + "\n"
    files = () if mounted else tuple(f for f in _context_files(root) if not f.startswith(f"{CONTEXT_DIR}/"))
    return BuildPlan(
        own_dockerfile=False,
        dockerfile=f"{CONTEXT_DIR}/Dockerfile",
        dockerfile_text=text,
        extra_files=(
            (f"{CONTEXT_DIR}/Dockerfile", text),
            (f"{CONTEXT_DIR}/requirements.txt", requirements),
        ),
        files=files,
        base_image=base or settings.base_image,
        notes=tuple(notes),
        runtime=runtime_files(),
        mounted=mounted,
    )


# -- base images: one per Dagster release the repos use ----------------------------------------


@dataclass(frozen=True)
class BasePlan:
    """The base image of one Dagster release: Dagster, dagster-aws, dagster-postgres, the runtime."""

    release: str
    python_image: str
    dockerfile_text: str
    constraints: str
    runtime: tuple[tuple[str, str], ...]

    def content_hash(self, python_image_id: str | None) -> str:
        data = [self.release, self.python_image, python_image_id, self.dockerfile_text, self.constraints, list(self.runtime)]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()

    def context(self) -> BuildPlan:
        """The plan the builder runs (the base has no repo files)."""
        return BuildPlan(
            own_dockerfile=False,
            dockerfile="Dockerfile",
            dockerfile_text=self.dockerfile_text,
            extra_files=(("Dockerfile", self.dockerfile_text), ("constraints.txt", self.constraints), *self.runtime),
            files=(),
            base_image=self.python_image,
        )


def plan_base(settings: ImageSettings, release: str) -> BasePlan:
    """The base image of dagster ``release`` on ``META_DEPLOYER_BASE_IMAGE`` (pure but for reading the templates)."""
    requirements = versions.base_requirements(release)
    text = BASE_TEMPLATE_PATH.read_text().replace("{{python_image}}", settings.base_image)
    constraints = f"# Dagster {release}: the base image's packages, pinned for every later install.\n" + "\n".join(requirements) + "\n"
    return BasePlan(release, settings.base_image, text, constraints, runtime_files())


def base_ref(plan: BasePlan, registry: str | None, python_image_id: str | None) -> str:
    """``<registry>/dagster/base:<release>-<hash12>``: tagged by content, so a change makes a new tag."""
    return f"{image_repository(BASE_NAME, registry)}:{plan.release}-{plan.content_hash(python_image_id)[:12]}"


def image_repository(name: str, registry: str | None) -> str:
    """``<registry>/dagster/<name>``, or ``dagster/<name>`` with no registry."""
    repo = naming.ecr_repository(name)
    return f"{registry}/{repo}" if registry else repo


def image_tag(commit: str, content_hash: str, mounted: bool = False) -> str:
    """The immutable tag: ``<commit12>-<hash12>``; a dependency image (mounted code): ``deps-<hash24>``,
    no commit in it, so every commit with the same dependency files shares it."""
    if mounted:
        return f"{DEPS_TAG_PREFIX}{content_hash[:24]}"
    return f"{commit[:12]}-{content_hash[:12]}"


def split_ref(ref: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag); the registry port's colon is not a tag separator."""
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        return ref, "latest"
    return repo, tag


# -- registries ------------------------------------------------------------------


def ecr_client(region: str | None = None, env: Mapping[str, str] | None = None):
    """A boto3 ECR client (honours AWS_ENDPOINT_URL). Made on use, never at import."""
    import boto3

    env = os.environ if env is None else env
    return boto3.client("ecr", region_name=region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"))


_ecr_tokens: dict[str, tuple[float, str, dict[str, str]]] = {}


def ecr_login(registry: str | None, env: Mapping[str, str] | None = None, client=None) -> tuple[str, dict[str, str]]:
    """Log in to ECR with ``get_authorization_token``: (registry host, docker auth_config).

    With no ``registry`` the account's default registry is used (the ecs platform).
    Tokens are cached for the process until shortly before they expire.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    key = registry or ""
    cached = _ecr_tokens.get(key)
    if cached and cached[0] > time.time():
        return cached[1], cached[2]
    region = None
    match = ECR_HOST.match((registry or "").split("/")[0])
    if match:
        region = match.group("region")
    client = client or ecr_client(region, env)
    try:
        data = client.get_authorization_token()["authorizationData"][0]
    except ClientError as exc:
        raise AwsOperationError(
            f"ecr:GetAuthorizationToken failed ({exc.response['Error']['Code']}): the deployer's role needs "
            "ecr:GetAuthorizationToken to push images"
        ) from exc
    except BotoCoreError as exc:
        raise AwsOperationError(f"ecr:GetAuthorizationToken failed: {exc}") from exc
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    endpoint = data["proxyEndpoint"]
    host = registry or endpoint.split("://", 1)[-1].rstrip("/")
    auth = {"username": user, "password": password, "serveraddress": endpoint}
    expires = data.get("expiresAt")
    until = expires.timestamp() - 300 if hasattr(expires, "timestamp") else time.time() + 3600
    _ecr_tokens[key] = (until, host, auth)
    return host, auth


def ensure_ecr_repository(
    name: str, registry: str | None, env: Mapping[str, str] | None = None, client=None, *, repository: str | None = None
) -> str:
    """Create the repo's ECR repository (or ``repository``, e.g. the platform's) if it is missing ("already
    exists" is success); returns its name."""
    from botocore.exceptions import ClientError

    repository = repository or naming.ecr_repository(name)
    match = ECR_HOST.match((registry or "").split("/")[0])
    client = client or ecr_client(match.group("region") if match else None, env)
    try:
        client.create_repository(
            repositoryName=repository,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            tags=[{"Key": naming.REPO_TAG_KEY, "Value": name}] if name else [],
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "RepositoryAlreadyExistsException":
            raise AwsOperationError(
                f"ecr:CreateRepository {repository} failed ({exc.response['Error']['Code']}): "
                f"{exc.response['Error'].get('Message', '')}"
            ) from exc
    return repository


def resolve_registry(settings: ImageSettings) -> tuple[str | None, dict[str, str] | None]:
    """The registry images go to and the auth to use there (None, None: the local engine only)."""
    if settings.ecr:
        return ecr_login(settings.registry, settings.env)
    return settings.registry, None


def registry_digest(client: docker.DockerClient, ref: str, auth: dict[str, str] | None) -> str | None:
    """The digest of ``ref`` in its registry, or None when the registry does not have it."""
    import docker

    try:
        return client.api.inspect_distribution(ref, auth_config=auth)["Descriptor"]["digest"]
    except docker.errors.APIError as exc:
        # 404 manifest unknown; 401/403 from registries that hide missing repositories.
        if exc.status_code in (401, 403, 404) or exc.status_code is None:
            return None
        if exc.status_code >= 500:
            return None  # an unreachable registry: build, and let the push report it
        raise


def local_image_id(client: docker.DockerClient, ref: str) -> str | None:
    """The engine's image id for ``ref``, or None."""
    import docker

    try:
        return client.api.inspect_image(ref)["Id"]
    except docker.errors.ImageNotFound:
        return None


def pull_image(client: docker.DockerClient, ref: str, auth: dict[str, str] | None, log: Log) -> str:
    """Pull ``ref`` to the engine (no-op when present); returns the image id."""
    image_id = local_image_id(client, ref)
    if image_id:
        return image_id
    repo, tag = split_ref(ref)
    log(f"pulling {ref}")
    last = ""
    for chunk in client.api.pull(repo, tag, stream=True, decode=True, auth_config=auth):
        if "error" in chunk:
            raise PublishError(f"pulling {ref} failed: {chunk['error']}")
        last = chunk.get("status", last)
    image_id = local_image_id(client, ref)
    if not image_id:
        raise PublishError(f"pulling {ref} finished ({last}) but the engine does not have it")
    return image_id


# -- build -------------------------------------------------------------------------


class _Lines:
    """Split a stream of text chunks into lines, passing each to ``log`` and keeping the tail."""

    def __init__(self, log: Log, prefix: str = ""):
        self.log, self.prefix = log, prefix
        self.partial = ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.step = ""

    def feed(self, text: str) -> None:
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self._line(line)

    def flush(self) -> None:
        if self.partial:
            self._line(self.partial)
            self.partial = ""

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        if _STEP.match(line):
            self.step = line
        elif line.startswith(_NOISE) and "Using cache" not in line:
            return
        self.tail.append(line)
        self.log(f"{self.prefix}{line}")


def _runtime_plan(plan: BuildPlan, image: str) -> BuildPlan:
    text = runtime_dockerfile(image)
    return BuildPlan(
        own_dockerfile=False,
        dockerfile="Dockerfile",
        dockerfile_text=text,
        extra_files=(("Dockerfile", text), *plan.runtime),
        files=(),
        base_image=image,
    )


def _context_tar(root: Path, plan: BuildPlan):
    from docker.utils.build import create_archive

    extra = list(plan.extra_files)
    if plan.own_dockerfile:
        # Sent even when the repo's .dockerignore lists it, as `docker build` does.
        extra.append((plan.dockerfile, plan.dockerfile_text))
    fileobj = tempfile.TemporaryFile()
    return create_archive(root=str(root), files=list(plan.files), fileobj=fileobj, extra_files=extra)


def _build(
    client: docker.DockerClient,
    spec: RepoSpec,
    checkout: Checkout,
    plan: BuildPlan,
    tag: str,
    labels: dict[str, str],
    settings: ImageSettings,
    log: Log,
    nocache: bool = False,
) -> str:
    hint = (
        f"Fix the {'Dockerfile' if plan.own_dockerfile else 'dependencies (requirements.txt / pyproject.toml)'} "
        "and push a new commit; nothing was deployed."
    )
    what = f"the image of {spec.name} at {checkout.short_commit}"
    return _run_build(client, what, checkout.path, plan, tag, labels, settings, log, hint, nocache)


def _build_plain(
    client: docker.DockerClient, what: str, plan: BuildPlan, tag: str, labels: dict[str, str], settings: ImageSettings, log: Log
) -> str:
    """Build an image whose context is only the plan's generated files (base images)."""
    return _run_build(client, what, Path("/nonexistent"), plan, tag, labels, settings, log, "nothing was deployed.")


def _run_build(
    client: docker.DockerClient,
    what: str,
    root: Path,
    plan: BuildPlan,
    tag: str,
    labels: dict[str, str],
    settings: ImageSettings,
    log: Log,
    hint: str,
    nocache: bool = False,
) -> str:
    import docker

    started = time.monotonic()
    lines = _Lines(log)
    image_id = None
    context = _context_tar(root, plan)
    try:
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            dockerfile=plan.dockerfile,
            tag=tag,
            labels=labels,
            network_mode="host",  # pip needs the package proxy; the CI engine has no bridge (DESIGN.md)
            rm=True,
            forcerm=True,
            pull=False,
            nocache=nocache,
            decode=True,
        )
        for chunk in stream:
            if "stream" in chunk:
                lines.feed(chunk["stream"])
            elif "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            elif "error" in chunk or "errorDetail" in chunk:
                lines.flush()
                detail = chunk.get("errorDetail") or {}
                message = detail.get("message") or chunk.get("error") or "unknown error"
                raise ImageBuildError(
                    f"building {what} failed at "
                    f"{lines.step or 'the start'}: {message.strip()}\n"
                    f"Last lines of the build:\n{tail(lines.tail)}\n{hint}"
                )
            if time.monotonic() - started > settings.build_timeout_s:
                raise ImageBuildError(
                    f"building {what} took over {settings.build_timeout_s:.0f}s "
                    f"(META_DEPLOYER_BUILD_TIMEOUT); it was at {lines.step}\n{tail(lines.tail)}"
                )
        lines.flush()
    except docker.errors.APIError as exc:
        raise ImageBuildError(
            f"the engine refused to build {what}: {exc.explanation or exc}"
        ) from exc
    finally:
        context.close()
    image_id = image_id or local_image_id(client, tag)
    if not image_id:
        raise ImageBuildError(f"the build of {what} ended without an image:\n{tail(lines.tail)}")
    return image_id


def validate_env(spec: RepoSpec, settings: ImageSettings, bucket: str = "") -> dict[str, str]:
    """The environment the definitions load in during validation (every builder uses the same)."""
    # Loading writes nothing; a local storage folder on the tmpfs stands in for the bucket.
    storage = storage_env(
        spec, bucket=bucket or settings.storage_bucket, storage_dir=f"{VALIDATE_DAGSTER_HOME}/storage"
    )
    # A throw-away instance on a tmpfs: the image's user may not write to its WORKDIR.
    return location_env(
        spec, storage, {**code_source_env(spec), **validating_env(), "DAGSTER_HOME": VALIDATE_DAGSTER_HOME}
    )


def validate_image(
    client: docker.DockerClient,
    spec: RepoSpec,
    image: str,
    settings: ImageSettings,
    log: Log,
    bucket: str = "",
    code: tuple[str, str] | None = None,
) -> str:
    """Load the spec's definitions inside ``image`` in a throw-away container; the image's dagster release.

    ``code``: (a local code archive file, its sha256) for a dependency image: the archive is copied
    into the container (never bound: the engine may be remote, or the deployer itself a container)
    and the entry point checks and unpacks it as a served location does (still no network).

    UnsupportedDagsterVersion when that release is outside the window; ValidationFailed when the
    definitions or the code server fail (see :func:`~meta_deployer.platforms.location.validation_outcome`).
    """
    import docker

    env = validate_env(spec, settings, bucket)
    image_workdir = client.api.inspect_image(image)["Config"].get("WorkingDir")
    workdir = container_workdir(image_workdir, spec)
    copied: bytes | None = None
    if code is not None:
        archive, sha = code
        env.update(mounted_code_env(spec, VALIDATE_CODE_ARCHIVE, sha, f"{VALIDATE_DAGSTER_HOME}/code"))
        copied = _single_file_tar(Path(archive), Path(VALIDATE_CODE_ARCHIVE).name)
        workdir = image_workdir or "/"
    command = validate_command()
    log(f"validating in {workdir}: {' '.join(command)} ({env['META_DEPLOYER_CODE_SOURCE']})")
    container = client.containers.create(
        image,
        command=command,
        environment=env,
        working_dir=workdir,
        # Loading definitions needs no network: none at all (no metadata service, nothing on the host).
        network_mode="none",
        tmpfs={VALIDATE_DAGSTER_HOME: "mode=1777"},
        labels={f"{LABEL_PREFIX}validate": spec.name},
    )
    try:
        if copied is not None:
            container.put_archive(str(Path(VALIDATE_CODE_ARCHIVE).parent), copied)
        container.start()
        try:
            result = container.wait(timeout=settings.validate_timeout_s)
        except Exception as exc:  # requests' ReadTimeout: the wait outlived the setting
            raise ValidationFailed(
                f"loading the definitions of {spec.name} took over {settings.validate_timeout_s:.0f}s "
                f"(META_DEPLOYER_VALIDATE_TIMEOUT); this version was not deployed"
            ) from exc
        output = container.logs(stdout=True, stderr=True).decode(errors="replace").splitlines()
        code = result.get("StatusCode", 1)
        version = _validated_version(spec, output, code)
        for line in output[-5:]:
            log(f"validate: {line}")
        return version
    finally:
        try:
            container.remove(force=True)
        except docker.errors.APIError:
            pass


#: Where validation puts a commit's code archive inside the container (the root exists in every image).
VALIDATE_CODE_ARCHIVE = "/meta-deployer-code.tar.gz"


def _single_file_tar(path: Path, name: str) -> bytes:
    """A tar holding ``path`` as ``name`` (read-only for everyone), for the engine's put_archive."""
    import io
    import tarfile

    data = path.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o444
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def smoke_test(client: docker.DockerClient, name: str, image: str, modules: str, log: Log) -> None:
    """Import ``modules`` in ``image`` with no network (an image without code cannot load definitions)."""
    import docker

    try:
        output = client.containers.run(
            image, ["python", "-c", f"import {modules}"], network_mode="none", remove=True,
            stdout=True, stderr=True, user="0",
            labels={f"{LABEL_PREFIX}validate": name},
        )
    except docker.errors.ContainerError as exc:
        raise ImageBuildError(
            f"the image {image} cannot import {modules}:\n{(exc.stderr or b'').decode(errors='replace')[-2000:]}"
        ) from exc
    log(f"{image} imports {modules}{(': ' + output.decode().strip()) if output.strip() else ''}")


def _validated_version(spec: RepoSpec, output: list[str], code: int) -> str:
    """The image's dagster release from the validator's output, or the error of what failed."""
    return validation_outcome(spec.name, "the new image", "\n".join(output), code, tail(output))


# -- builders ------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildJob:
    """One image to build: what every builder gets from :func:`build_image`.

    ``ref`` is the immutable ``<repository>:<tag>``; the builder must make it exist only
    once the image's definitions loaded (built and validated), so that "the tag exists"
    keeps meaning what the no-op path relies on.
    """

    spec: RepoSpec
    checkout: Checkout
    plan: BuildPlan
    repository: str
    tag: str
    content_hash: str
    registry: str | None
    labels: Mapping[str, str]
    run_id: str | None = None

    @property
    def ref(self) -> str:
        """``<repository>:<tag>``."""
        return f"{self.repository}:{self.tag}"


class Builder(Protocol):
    """Who builds images (``META_DEPLOYER_BUILDER``): the engine at DOCKER_HOST, or AWS CodeBuild."""

    name: str

    def registry(self) -> str | None:
        """The registry images go to (None: the local engine only)."""
        ...

    def base_image_id(self, plan: BuildPlan) -> str | None:
        """The base image's id when the builder can know it (part of the tag's hash), else None."""
        ...

    def find(self, ref: str, log: Log) -> dict[str, Any] | None:
        """Metadata of ``ref`` when it exists already (built and validated before), else None."""
        ...

    def build(self, job: BuildJob, log: Log) -> dict[str, Any]:
        """Build and validate ``job.ref``, streaming output to ``log``; returns its metadata.

        ``metadata["in_registry"]`` (with ``"digest"``) says the builder pushed it already.
        """
        ...

    def build_context(self, ref: str, context: bytes, labels: Mapping[str, str], log: Log) -> dict[str, Any]:
        """Build a self-contained context (a tar with its ``Dockerfile`` at the root) as ``ref`` and push it
        to the builder's registry; returns ``{"digest": ...}``. Used for the platform image
        (``platforms/platform_image.py``): no repo definitions to validate."""
        ...


class DockerBuilder:
    """Builds through the Docker engine named by ``DOCKER_HOST`` (local or remote), then validates
    in a throw-away container on that engine; the push is :func:`push_image`'s."""

    name = "docker"

    def __init__(self, settings: ImageSettings):
        self.settings = settings
        self.client = docker_client(settings.env)
        self._registry, self.auth = resolve_registry(settings)

    def registry(self) -> str | None:
        return self._registry

    def base_image_id(self, plan: BuildPlan) -> str | None:
        return local_image_id(self.client, plan.base_image) if plan.base_image else None

    def find(self, ref: str, log: Log) -> dict[str, Any] | None:
        if self._registry:
            digest = registry_digest(self.client, ref, self.auth)
            if digest:
                log(f"{ref} is already in the registry (built and validated before): no build, no push")
                return {"in_registry": True, "digest": digest}
        existing = local_image_id(self.client, ref)
        if existing:
            log(f"{ref} was already built and validated on this engine: no build")
            return {"image_id": existing}
        return None

    def ensure_base(self, release: str, log: Log, python_image: str | None = None) -> str:
        """The base image of dagster ``release`` on ``python_image`` (default: ``META_DEPLOYER_BASE_IMAGE``),
        on this engine and (with a registry) in the registry: found by its content tag, else built
        (and pushed) once. Returns its reference."""
        settings = self.settings if python_image is None else self.settings.model_copy(update={"base_image": python_image})
        plan = plan_base(settings, release)
        ref = base_ref(plan, self._registry, local_image_id(self.client, plan.python_image))
        if local_image_id(self.client, ref):
            if self._registry and not registry_digest(self.client, ref, self.auth):
                push_ref(self.client, *split_ref(ref), self.auth, log)
            return ref
        if self._registry and registry_digest(self.client, ref, self.auth):
            pull_image(self.client, ref, self.auth, log)
            return ref
        log(f"building the base image {ref} ({', '.join(versions.base_requirements(release))})")
        started = time.monotonic()
        candidate = f"{split_ref(ref)[0]}:candidate-{split_ref(ref)[1]}"
        labels = {f"{LABEL_PREFIX}base": release}
        _build_plain(self.client, f"the base image of dagster {release}", plan.context(), candidate, labels, self.settings, log)
        try:
            smoke_test(self.client, BASE_NAME, candidate, "dagster, dagster_aws, dagster_postgres, meta_deployer_runtime.location", log)
            repo, tag = split_ref(ref)
            self.client.api.tag(candidate, repo, tag)
        finally:
            try:
                self.client.api.remove_image(candidate, noprune=True)
            except Exception:  # only a name
                pass
        log(f"built the base image {ref} in {time.monotonic() - started:.1f}s")
        if self._registry:
            if is_ecr(self._registry):
                ensure_ecr_repository(BASE_NAME, self._registry, self.settings.env)
            push_ref(self.client, *split_ref(ref), self.auth, log)
        return ref

    def build(self, job: BuildJob, log: Log) -> dict[str, Any]:
        client, settings, spec, checkout, plan = self.client, self.settings, job.spec, job.checkout, job.plan
        started = time.monotonic()
        candidate = f"{job.repository}:candidate-{job.tag}"
        base = f"{job.repository}:candidate-base-{job.tag}"
        labels = dict(job.labels)
        try:
            _build(client, spec, checkout, plan, base, labels, settings, log)
            log("adding the runtime layer (meta_deployer's runtime modules, for the instance's classes)")
            image_id = _build(client, spec, checkout, _runtime_plan(plan, base), candidate, labels, settings, log)
        finally:
            try:
                client.api.remove_image(base, noprune=True)
            except Exception:  # the base tag is only a name; losing it is harmless
                pass
        build_s = time.monotonic() - started
        try:
            if plan.mounted:
                # No code inside: the definitions load per commit, with its archive (platforms/docker.py).
                smoke_test(client, spec.name, candidate, "dagster, meta_deployer_runtime.location", log)
                dagster_version = None  # known once a commit's code is validated in it (platforms/docker.py)
            else:
                dagster_version = validate_image(client, spec, candidate, settings, log)
            repo, tag_part = split_ref(job.ref)
            client.api.tag(image_id, repo, tag_part)
        finally:
            try:
                client.api.remove_image(candidate, noprune=True)
            except Exception:  # the candidate tag is only a name; losing it is harmless
                pass
        log(f"built {job.ref} in {build_s:.1f}s and validated it in {time.monotonic() - started - build_s:.1f}s")
        return {"image_id": image_id, "build_s": round(build_s, 2), "dagster_version": dagster_version}


    def build_context(self, ref: str, context: bytes, labels: Mapping[str, str], log: Log) -> dict[str, Any]:
        import io

        import docker

        if not self._registry:
            raise ImageBuildError(f"{ref} is pushed to a registry: set META_DEPLOYER_REGISTRY")
        started = time.monotonic()
        lines = _Lines(log)
        try:
            for chunk in self.client.api.build(
                fileobj=io.BytesIO(context), custom_context=True, tag=ref, labels=dict(labels),
                network_mode="host", rm=True, forcerm=True, pull=False, decode=True,
            ):
                if "stream" in chunk:
                    lines.feed(chunk["stream"])
                elif "error" in chunk or "errorDetail" in chunk:
                    lines.flush()
                    message = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                    raise ImageBuildError(f"building {ref} failed at {lines.step}: {message}\n{tail(lines.tail)}")
                if time.monotonic() - started > self.settings.build_timeout_s:
                    raise ImageBuildError(f"building {ref} took over {self.settings.build_timeout_s:.0f}s (META_DEPLOYER_BUILD_TIMEOUT)")
            lines.flush()
        except docker.errors.APIError as exc:
            raise ImageBuildError(f"the engine refused to build {ref}: {exc.explanation or exc}") from exc
        if self.settings.ecr:
            ensure_ecr_repository("", self._registry, self.settings.env, repository=split_ref(ref)[0].split("/", 1)[1])
        repo, tag = split_ref(ref)
        digest = push_ref(self.client, repo, tag, self.auth, log)
        log(f"built and pushed {ref} ({digest}) in {time.monotonic() - started:.1f}s")
        return {"digest": digest, "in_registry": True}


def get_builder(settings: ImageSettings) -> Builder:
    """The builder ``META_DEPLOYER_BUILDER`` names."""
    if settings.builder == "codebuild":
        from meta_deployer.platforms.codebuild import CodeBuildBuilder

        return CodeBuildBuilder(settings)
    return DockerBuilder(settings)


def build_image(
    spec: RepoSpec, checkout: Checkout, settings: ImageSettings, log: Log, *, run_id: str | None = None,
    builder: Builder | None = None, mount: bool = False,
) -> Artifact:
    """Build, validate and tag the repo's image, or find it already built: see the module docstring.

    Returns an ``Artifact(kind="image")`` whose ``ref`` is the immutable tag. ``built`` is False
    on the fast path; ``metadata["in_registry"]`` is True when the registry already has it.
    The build itself is the builder's (``META_DEPLOYER_BUILDER``); ``run_id`` is the deploy
    run's id (CodeBuild's idempotency token).
    """
    builder = builder or get_builder(settings)
    registry = builder.registry()
    base = release = None
    if not (checkout.path / "Dockerfile").is_file():
        # Before anything is built: a requires-python no image Python satisfies (BuildError) and a
        # release outside the window (UnsupportedDagsterVersion) fail here.
        settings = python_settings(spec, checkout.path, settings, log)
        release = templated_release(spec, checkout.path, settings)
        log(f"{spec.name} asks for dagster {release} (supported: {versions.window()})")
        ensure_base = getattr(builder, "ensure_base", None)
        if ensure_base is not None:
            base = ensure_base(release, log, python_image=settings.base_image)
    plan = plan_build(spec, checkout, settings, base=base, mount=mount, release=release)
    for note in plan.notes:
        log(f"note: {note}")
    content_hash = plan.content_hash(builder.base_image_id(plan))
    repository = image_repository(spec.name, registry)
    tag = image_tag(checkout.commit, content_hash, plan.mounted)
    ref = f"{repository}:{tag}"
    metadata: dict[str, Any] = {
        "image": ref,
        "registry": registry or "",
        "dockerfile": "repo" if plan.own_dockerfile else "template",
        "command": grpc_command(spec),
        "commit": checkout.commit,
        "mounted": plan.mounted,
        "base": base or "",
    }
    found = builder.find(ref, log)
    if found is not None:
        return Artifact("image", ref, content_hash, built=False, metadata={**metadata, **found})

    log(f"building {ref} from {'the repo' if plan.own_dockerfile else 'the template'} Dockerfile ({builder.name} builder)")
    labels = {
        f"{LABEL_PREFIX}repo": spec.name,
        f"{LABEL_PREFIX}commit": checkout.commit,
        f"{LABEL_PREFIX}content-hash": content_hash,
    }
    job = BuildJob(spec, checkout, plan, repository, tag, content_hash, registry, labels, run_id)
    built = builder.build(job, log)
    return Artifact("image", ref, content_hash, built=True, metadata={**metadata, **built})


# -- push ----------------------------------------------------------------------------


def push_image(spec: RepoSpec, artifact: Artifact, registry: str | None, log: Log, env: Mapping[str, str] | None = None) -> Published:
    """Push the image to ``registry`` (creating the ECR repository and logging in when it is ECR).

    No-op when the registry already had the tag, or when no registry is set (the
    image then stays on the local engine; the digest is its image id).
    """
    env = dict(os.environ if env is None else env)
    if artifact.metadata.get("in_registry"):
        return Published(artifact.ref, digest=artifact.metadata.get("digest"), pushed=False, metadata={"digest": artifact.metadata.get("digest")})
    registry = registry or artifact.metadata.get("registry") or None
    client = docker_client(env)
    if not registry:
        image_id = local_image_id(client, artifact.ref)
        log(f"no registry set (META_DEPLOYER_REGISTRY): {artifact.ref} stays on this engine")
        return Published(artifact.ref, digest=image_id, pushed=False, metadata={"digest": image_id or ""})
    auth = None
    if is_ecr(registry):
        ensure_ecr_repository(spec.name, registry, env)
        _, auth = ecr_login(registry, env)
    repo, tag = split_ref(artifact.ref)
    target_repo = image_repository(spec.name, registry)
    if target_repo != repo:
        client.api.tag(artifact.ref, target_repo, tag)
    ref = f"{target_repo}:{tag}"
    started = time.monotonic()
    digest = push_ref(client, target_repo, tag, auth, log)
    log(f"pushed {ref} ({digest}) in {time.monotonic() - started:.1f}s")
    return Published(ref, digest=digest, pushed=True, metadata={"digest": digest, "pinned": f"{target_repo}@{digest}"})


def push_ref(client: docker.DockerClient, repository: str, tag: str, auth: dict[str, str] | None, log: Log) -> str:
    """Push ``repository:tag`` (the registry is the repository's host); its digest, or PublishError."""
    ref = f"{repository}:{tag}"
    registry = repository.split("/", 1)[0]
    target_repo = repository
    log(f"pushing {ref}")
    digest = None
    try:
        for chunk in client.api.push(target_repo, tag, stream=True, decode=True, auth_config=auth):
            if "error" in chunk or "errorDetail" in chunk:
                message = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                raise PublishError(
                    f"pushing {ref} failed: {message}. Check that the registry {registry} is reachable "
                    "and that the deployer may push there (META_DEPLOYER_REGISTRY)"
                )
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = aux["Digest"]
            elif chunk.get("status") in ("Pushed", "Layer already exists", "Mounted from"):
                log(f"push: {chunk.get('id', '')} {chunk['status']}")
    except Exception as exc:
        import docker
        import requests

        if isinstance(exc, (docker.errors.APIError, requests.exceptions.RequestException)):
            raise PublishError(f"pushing {ref} failed: {exc}") from exc
        raise
    if not digest:
        raise PublishError(f"pushing {ref} reported no digest; the registry {registry} may have refused it")
    return digest
