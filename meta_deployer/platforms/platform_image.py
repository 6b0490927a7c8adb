"""The platform image: this project with the webserver, the daemon and the deployer, built by a Builder.

Every platform task (``dagster-webserver``, ``dagster-daemon``, ``meta-deployer``) and the local rehearsal
(``make platform-local``) run one image::

    platform_context(base_image, instance_config, with_moto=False, root) -> PlatformContext
        a Dockerfile (base image, the project installed with its pinned Dagster family:
        dagster-webserver, the daemon, dagster-postgres, dagster-aws, dagster-docker; moto's
        server only for the rehearsal's S3 stand-in), the instance's dagster.yaml, and the
        project's files as git sees them (never generated state)
        -> tag: a hash of all of it (an unchanged tree is the same tag)
    ensure_platform_image(builder, context, log) -> PlatformImage
        the builder (``images.Builder``: the engine at DOCKER_HOST, or CodeBuild) has
        ``<registry>/dagster/platform:<tag>`` already? no build, no push
        else it builds and pushes that context (``Builder.build_context``)
        -> the reference by digest, ``<registry>/dagster/platform@sha256:...``

The repository ``dagster/platform`` cannot be a repo's (``platform`` is a reserved repo name).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from meta_deployer import versions
from meta_deployer.errors import ImageBuildError
from meta_deployer.model import Log

#: The platform image's repository in the registry (``naming.PLATFORM_NAME`` is reserved for it).
PLATFORM_REPOSITORY = "dagster/platform"
#: Where the project and the instance live inside the image. No ``ENV DAGSTER_HOME``: each task sets it
#: (the rehearsal's deployer must have none, or the docker platform would bind it into every location).
SOURCE_DIR = "/opt/meta_deployer"
DAGSTER_HOME = "/opt/dagster/home"
#: What the platform's processes need besides the project's own pins (they are its dependencies too:
#: named here so that a project file that dropped one fails the image, not a task at start-up).
PLATFORM_PACKAGES = ("dagster", "dagster-webserver", "dagster-postgres", "dagster-aws", "dagster-docker")
#: Bump when the Dockerfile or the context layout changes: part of the tag's hash.
PLATFORM_IMAGE_VERSION = "1"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PlatformContext:
    """A self-contained build context (a tar with its ``Dockerfile`` at the root) and its content tag."""

    tar: bytes
    tag: str
    dockerfile: str


@dataclass(frozen=True)
class PlatformImage:
    """The platform image: its tag, its reference by digest, and whether this call built it."""

    ref: str  # <repository>:<tag>
    digest: str
    pinned: str  # <repository>@<digest>
    built: bool


def project_files(root: Path = PROJECT_ROOT) -> list[str]:
    """The project's files as git sees them (tracked, and new ones not ignored): never generated state."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, check=True, capture_output=True,
    ).stdout.decode()
    return sorted(f for f in out.split("\0") if f and (root / f).is_file())


def platform_dockerfile(base_image: str, with_moto: bool = False) -> str:
    """The platform image's Dockerfile: the project, its Dagster family pinned, the instance config."""
    packages = " ".join(f"'{versions.requirement(p)}'" for p in PLATFORM_PACKAGES)
    extra = ""
    if with_moto:
        from importlib import metadata

        extra = f" 'moto[server]=={metadata.version('moto')}'"  # the rehearsal's S3 stand-in: the tests' moto
    return (
        f"FROM {base_image}\n"
        f"COPY src {SOURCE_DIR}/src\n"
        f"RUN pip install --no-cache-dir --progress-bar off {SOURCE_DIR}/src {packages}{extra}\n"
        f"COPY dagster.yaml {DAGSTER_HOME}/dagster.yaml\n"
        f"WORKDIR {SOURCE_DIR}\n"
    )


def platform_context(
    base_image: str, instance_config: str, *, with_moto: bool = False, root: Path = PROJECT_ROOT
) -> PlatformContext:
    """The build context of the platform image and its content tag (16 hex characters)."""
    digest = hashlib.sha256(PLATFORM_IMAGE_VERSION.encode())
    buffer = io.BytesIO()
    dockerfile = platform_dockerfile(base_image, with_moto)
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())

        add("Dockerfile", dockerfile.encode())
        add("dagster.yaml", instance_config.encode())
        for rel in project_files(root):
            add(f"src/{rel}", (root / rel).read_bytes())
    return PlatformContext(buffer.getvalue(), digest.hexdigest()[:16], dockerfile)


def ensure_platform_image(builder, context: PlatformContext, log: Log) -> PlatformImage:
    """The platform image in the builder's registry, by digest; built and pushed only when its tag is missing."""
    registry = builder.registry()
    if not registry:
        raise ImageBuildError(
            "the platform image is pushed to a registry: set META_DEPLOYER_REGISTRY (or use the account's ECR)"
        )
    repository = f"{registry}/{PLATFORM_REPOSITORY}"
    ref = f"{repository}:{context.tag}"
    found = builder.find(ref, log)
    if found and found.get("digest"):
        return PlatformImage(ref, found["digest"], f"{repository}@{found['digest']}", built=False)
    log(f"building the platform image {ref} ({builder.name} builder)")
    built = builder.build_context(ref, context.tar, {"meta-deployer.image": "platform"}, log)
    digest = built.get("digest")
    if not digest:
        raise ImageBuildError(f"the platform image {ref} was built but its push reported no digest")
    return PlatformImage(ref, digest, f"{repository}@{digest}", built=True)
