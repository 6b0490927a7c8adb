"""Base images and mounted code, measured side by side in one run (no timing asserts).

Reports, for one small templated repo (dagster only):

- a cold build + push of its image with the family's shared base image (already built once, as on
  a running platform) against the same without it (Dagster installed from scratch in the image);
- a code-only change with mounting (no image: write the commit's archive, load its definitions from
  it) against the same change rebuilt as an image (code layer, validation, push);

and the two ratios. Each cold build uses a dependency list no build has seen (an always-true
marker), so nothing of it is cached.

Needs the engine and registry of `.ci/services.sh`. Run:
    source .ci/services.sh && .venv/bin/python bench/bench_mounting.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from dockerkit import DEFINITIONS, cleanup, make_settings  # noqa: E402
from gitrepo import GitRemote  # noqa: E402

from meta_deployer import gitops, versions  # noqa: E402
from meta_deployer.model import Checkout  # noqa: E402
from meta_deployer.platforms import images  # noqa: E402
from meta_deployer.platforms.docker import DockerPlatform  # noqa: E402
from meta_deployer.spec import parse_spec  # noqa: E402


class NoBaseBuilder(images.DockerBuilder):
    """The docker builder as it was before base images: the plain template installs Dagster itself."""

    ensure_base = None


def quiet(line: str) -> None:
    pass


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main() -> None:
    if not os.environ.get("DOCKER_HOST") or not os.environ.get("META_DEPLOYER_TEST_REGISTRY"):
        sys.exit("bench_mounting needs DOCKER_HOST and META_DEPLOYER_TEST_REGISTRY: source .ci/services.sh first")
    names = [f"bench{uuid.uuid4().hex[:6]}" for _ in range(2)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        settings = make_settings(tmp_path)
        platform = DockerPlatform(settings)
        builder = images.DockerBuilder(settings.images)
        builder.ensure_base(versions.pin("dagster"), print)  # a running platform has it already
        results = {}
        try:
            for name, base in zip(names, (True, False)):
                marker = f'dagster=={versions.pin("dagster")} ; platform_release != "bench-{name}"\n'
                remote = GitRemote.create(tmp_path / f"{name}.git", {
                    "definitions.py": DEFINITIONS.format(asset="one", value=1), "requirements.txt": marker,
                })
                spec = parse_spec({"name": name, "git_url": remote.url, "python_file": "definitions.py"}, name)
                path = settings.checkout_path(name)

                def checkout() -> Checkout:
                    commit, changed = gitops.converge(remote.url, "main", path)
                    return Checkout(name, path, commit, "main", remote.url, changed)

                def cold_build(co=None):
                    co = checkout()
                    use = builder if base else NoBaseBuilder(settings.images)
                    artifact = images.build_image(spec, co, settings.images, quiet, builder=use)
                    return images.push_image(spec, artifact, settings.images.registry, quiet, settings.env)

                results[f"cold build+push, {'shared base' if base else 'no base'}"] = timed(cold_build)[0]
                if base:
                    platform.build(spec, checkout(), quiet)  # its dependency image, as its first deploy made it
                    remote.commit({"definitions.py": DEFINITIONS.format(asset="two", value=2)})

                    def mounted():
                        co = checkout()
                        artifact = platform.build(spec, co, quiet)
                        assert not artifact.built and artifact.metadata["mounted"]
                        return platform.publish(spec, artifact, quiet)

                    results["code-only change, mounted (archive + validate)"] = timed(mounted)[0]
                    remote.commit({"definitions.py": DEFINITIONS.format(asset="three", value=3)})

                    def rebuilt():
                        co = checkout()
                        artifact = images.build_image(spec, co, settings.images, quiet, builder=builder, mount=False)
                        assert artifact.built
                        return images.push_image(spec, artifact, settings.images.registry, quiet, settings.env)

                    results["code-only change, image rebuild (code layer + validate + push)"] = timed(rebuilt)[0]
        finally:
            cleanup(names)
    for label, seconds in results.items():
        print(f"{label:70s} {seconds:7.2f} s")
    cold = results["cold build+push, no base"] / results["cold build+push, shared base"]
    code = (results["code-only change, image rebuild (code layer + validate + push)"]
            / results["code-only change, mounted (archive + validate)"])
    print(f"cold deploy: without the shared base / with it = {cold:.1f}x")
    print(f"code-only change: image rebuild / mounting = {code:.1f}x")


if __name__ == "__main__":
    main()
