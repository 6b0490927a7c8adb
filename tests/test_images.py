"""Images: planning (pure), and build / validate / push against a real engine and registry."""

from __future__ import annotations

import os

import pytest
from dockerkit import (
    BROKEN,
    DEFINITIONS,
    OWN_DOCKERFILE,
    Collect,
    checkout,
    make_settings,
    repo_names,  # noqa: F401 - fixture
    spec_for,
    unique_name,
)

from meta_deployer.platforms import images, location
from meta_deployer.errors import ImageBuildError, SettingsError, SpecError, ValidationFailed
from meta_deployer.platforms.base import Checkout
from meta_deployer.settings import ImageSettings

# -- pure: commands, settings, planning -------------------------------------------


def test_location_args_are_relative_to_the_image_workdir():
    spec = spec_for("a", "file:///x", python_file="defs.py", working_directory="pipelines")
    assert location.location_args(spec) == ["--python-file", "pipelines/defs.py", "--working-directory", "pipelines"]
    spec = spec_for("a", "file:///x", package_name="pkg", working_directory="src")
    assert location.grpc_command(spec, "127.0.0.1", 4100) == [
        "dagster", "api", "grpc", "--host", "127.0.0.1", "--port", "4100",
        "--package-name", "pkg", "--working-directory", "src",
    ]
    assert location.location_args(spec_for("a", "file:///x", module_name="m.defs"))[:2] == ["--module-name", "m.defs"]
    with pytest.raises(SpecError, match="python_file, module_name or package_name"):
        location.location_args(spec_for("a", "file:///x"))


def test_settings_choose_ecr_and_reject_bad_values():
    assert ImageSettings.from_env({"META_DEPLOYER_PLATFORM": "docker"}).ecr is False
    assert ImageSettings.from_env({"META_DEPLOYER_PLATFORM": "ecs"}).ecr is True
    ecr = ImageSettings.from_env({"META_DEPLOYER_REGISTRY": "123456789012.dkr.ecr.eu-west-1.amazonaws.com"})
    assert ecr.ecr and images.is_ecr(ecr.registry)
    local = ImageSettings.from_env({"META_DEPLOYER_REGISTRY": "127.0.0.1:5000/", "META_DEPLOYER_PLATFORM": "ecs"})
    assert local.registry == "127.0.0.1:5000" and not local.ecr
    for bad in ({"META_DEPLOYER_REGISTRY": "https://r.example"}, {"META_DEPLOYER_BUILD_TIMEOUT": "soon"}):
        with pytest.raises(SettingsError):
            ImageSettings.from_env(bad)


def test_refs_and_tags():
    assert images.split_ref("127.0.0.1:5000/dagster/a:abc-def") == ("127.0.0.1:5000/dagster/a", "abc-def")
    assert images.split_ref("127.0.0.1:5000/dagster/a") == ("127.0.0.1:5000/dagster/a", "latest")
    assert images.image_tag("0123456789abcdef", "f" * 64) == "0123456789ab-ffffffffffff"
    assert images.image_repository("a", None) == "dagster/a"


def _checkout(remote) -> Checkout:
    return Checkout("a", remote.path, remote.head(), "main", remote.url, True)


def test_template_plan_puts_dependencies_before_code(git_remote):
    remote = git_remote(files={
        "definitions.py": DEFINITIONS.format(asset="x", value=1),
        "requirements.txt": "pandas>=2  # data\n-e .\n",
        "ignored.txt": "x",
        ".dockerignore": "ignored.txt\n",
    })
    spec = spec_for("a", remote.url, python_file="definitions.py")
    settings = images.ImageSettings(base_image="python:3.12-slim")
    plan = images.plan_build(spec, _checkout(remote), settings)
    requirements = dict(plan.extra_files)[".meta_deployer/requirements.txt"]
    assert images.DAGSTER_REQUIREMENT in requirements and "pandas>=2" in requirements
    assert "-e ." not in requirements  # local references install with the code
    assert "ignored.txt" not in plan.files and "definitions.py" in plan.files
    assert not any(f.startswith(".git/") for f in plan.files)
    text = plan.dockerfile_text
    assert text.index("requirements.txt") < text.index("COPY . /app") < text.index("USER dagster")
    assert "grpc-health-check" in text and '"--python-file", "definitions.py"' in text
    # Same inputs, same hash; another base image, another hash.
    assert plan.content_hash() == images.plan_build(spec, _checkout(remote), settings).content_hash()
    other = images.plan_build(spec, _checkout(remote), images.ImageSettings(base_image="python:3.13-slim"))
    assert other.content_hash() != plan.content_hash()


def test_pyproject_dependencies_go_in_the_dependency_layer(git_remote):
    remote = git_remote(files={k: v for k, v in OWN_DOCKERFILE.items() if k != "Dockerfile"})
    spec = spec_for("a", remote.url, package_name="src_layout_project", working_directory="src")
    plan = images.plan_build(spec, _checkout(remote), images.ImageSettings())
    requirements = dict(plan.extra_files)[".meta_deployer/requirements.txt"]
    assert "dagster==1.13.27" in requirements and "setuptools>=64" in requirements
    assert "pip install --no-deps --no-build-isolation -e ." in plan.dockerfile_text


def test_a_location_below_its_project_installs_that_project_s_dependencies(git_remote):
    """A location whose working directory is ``proj/src`` gets ``proj/``'s dependencies (issue 13), then
    the root's; another project's are not installed."""
    remote = git_remote(files={
        "requirements.txt": "dagster==1.13.27\nrootdep==1.0\n",  # an exact pin: no resolver run
        "proj/pyproject.toml": '[project]\nname = "proj"\nversion = "1"\ndependencies = ["projdep==2.0"]\n',
        "proj/src/proj/__init__.py": "",
        "other/pyproject.toml": '[project]\nname = "other"\nversion = "1"\ndependencies = ["otherdep==3.0"]\n',
    })
    spec = spec_for("a", remote.url, package_name="proj", working_directory="proj/src")
    plan = images.plan_build(spec, _checkout(remote), images.ImageSettings())
    requirements = dict(plan.extra_files)[".meta_deployer/requirements.txt"]
    assert "rootdep==1.0" in requirements and "projdep==2.0" in requirements and "otherdep" not in requirements
    assert "-e proj" in plan.dockerfile_text


def test_a_templated_repo_gets_the_release_its_dependency_files_ask_for(git_remote):
    """One resolver for dev and images (platforms/resolve.py): an exact pin as it is, else uv pip compile."""
    from meta_deployer import versions
    from meta_deployer.errors import UnsupportedDagsterVersion

    settings = images.ImageSettings(base_image="python:3.12-slim")
    older, middle = list(versions.tested_releases().values())[:2]
    cases = {
        "": versions.pin("dagster"),  # names no dagster: the deployer's own release
        f"dagster[aws]=={older} ; python_version >= '3.9'  # pinned\n": older,  # static: no resolver run
        f"dagster>={middle[:4]},<{middle[:4]}.999\n": None,  # a range: resolved for Python 3.12
    }
    for requirements, expected in cases.items():
        remote = git_remote(name=f"r{len(requirements)}", files={
            "definitions.py": DEFINITIONS.format(asset="x", value=1), "requirements.txt": requirements,
        })
        release = images.templated_release(spec_for("a", remote.url, python_file="definitions.py"), remote.path, settings)
        if expected is None:
            assert versions.family_of(release) == versions.family_of(middle), release
        else:
            assert release == expected

    # The instance's dagster-* packages pair with the repo's release (the base has its own; on the plain
    # template they are added, paired): never the deployer's own dagster-aws next to an older dagster.
    remote = git_remote(name="paired", files={
        "definitions.py": DEFINITIONS.format(asset="x", value=1), "requirements.txt": f"dagster=={older}\n",
    })
    spec = spec_for("a", remote.url, python_file="definitions.py")
    with_bucket = images.ImageSettings.from_env({"META_DEPLOYER_PLATFORM": "ecs"})
    plain = dict(images.plan_build(spec, _checkout(remote), with_bucket).extra_files)[".meta_deployer/requirements.txt"]
    assert f"dagster-aws=={versions.library_version(older)}" in plain and versions.requirement("dagster-aws") not in plain
    on_base = dict(images.plan_build(spec, _checkout(remote), with_bucket, base="b:1").extra_files)[".meta_deployer/requirements.txt"]
    assert "dagster-aws" not in on_base and "dagster-postgres" not in on_base

    # Outside the window: refused before any plan exists, naming the release, the window and the fix.
    remote = git_remote(name="old", files={
        "definitions.py": DEFINITIONS.format(asset="x", value=1), "requirements.txt": "dagster==1.5.13\n",
    })
    with pytest.raises(UnsupportedDagsterVersion) as raised:
        images.plan_build(spec_for("a", remote.url, python_file="definitions.py"), _checkout(remote), settings)
    assert "dagster 1.5.13" in str(raised.value) and versions.window() in str(raised.value)


# -- ECR, against a moto server ---------------------------------------------------------


def test_the_image_python_satisfies_requires_python():
    """The template picks the official image of a Python the project accepts (issue 13); none: a clear
    error before anything is built."""
    from meta_deployer.errors import BuildError
    from meta_deployer.platforms.resolve import python_image_for

    base = "python:3.12-slim"
    assert python_image_for("a", None, "", base) == base
    assert python_image_for("a", ">=3.10", "pyproject.toml", base) == base  # the default satisfies it
    assert python_image_for("a", ">=3.12.4,<4", "pyproject.toml", base) == base  # some 3.12 release does
    assert python_image_for("a", ">=3.13", "pyproject.toml", base) == "python:3.13-slim"
    assert python_image_for("a", "~=3.11.0", "p/pyproject.toml", "mirror.example/library/python:3.12-slim-bookworm") == (
        "mirror.example/library/python:3.11-slim-bookworm"
    )
    assert python_image_for("a", ">=3.13", "pyproject.toml", "corp/runtime:7") == "corp/runtime:7"  # says no version
    with pytest.raises(BuildError) as caught:
        python_image_for("sales", ">=3.15", "proj/pyproject.toml", base)
    message = str(caught.value)
    for part in ("sales requires Python >=3.15", "proj/pyproject.toml", "python:3.12-slim", "3.10, 3.11, 3.12, 3.13",
                 "Nothing was built", "META_DEPLOYER_BASE_IMAGE"):
        assert part in message, part
    with pytest.raises(BuildError, match="not a version specifier"):
        python_image_for("sales", "three point twelve", "pyproject.toml", base)


def test_requires_python_is_the_location_s_own_project_s(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "root"\nrequires-python = ">=3.10"\n')
    (tmp_path / "proj" / "src").mkdir(parents=True)
    (tmp_path / "proj" / "pyproject.toml").write_text('[project]\nname = "p"\nrequires-python = ">=3.13"\n')
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "pyproject.toml").write_text("not toml [[[")
    assert images.requires_python(spec_for("a", "https://x/a.git", working_directory="proj/src"), tmp_path) == (
        ">=3.13", "proj/pyproject.toml"
    )
    assert images.requires_python(spec_for("a", "https://x/a.git"), tmp_path) == (">=3.10", "pyproject.toml")
    # An unreadable project file is no requirement: the next folder up decides.
    assert images.requires_python(spec_for("a", "https://x/a.git", working_directory="other"), tmp_path) == (
        ">=3.10", "pyproject.toml"
    )


def test_a_requires_python_no_image_satisfies_fails_before_anything_is_built(tmp_path, git_remote, repo_names):
    from meta_deployer.errors import BuildError

    name = unique_name()
    repo_names.append(name)
    settings = make_settings(tmp_path)
    remote = git_remote(files={
        "definitions.py": DEFINITIONS.format(asset="hello", value=1),
        "pyproject.toml": '[project]\nname = "future"\nversion = "1"\nrequires-python = ">=3.15"\ndependencies = []\n',
    })
    spec = spec_for(name, remote.url, python_file="definitions.py")
    co = checkout(settings, spec)
    client = images.docker_client(settings.env)
    log = Collect()
    with pytest.raises(BuildError, match="requires Python >=3.15"):
        images.build_image(spec, co, settings.images, log)
    assert client.images.list(filters={"label": f"{images.LABEL_PREFIX}repo={name}"}) == []
    assert not any("building" in line for line in log.lines)  # not even a base image


def test_ecr_repository_and_login(moto):
    env = dict(os.environ)
    assert images.ensure_ecr_repository("team-a", None, env) == "dagster/team-a"
    assert images.ensure_ecr_repository("team-a", None, env) == "dagster/team-a"  # exists: success
    images._ecr_tokens.clear()
    host, auth = images.ecr_login(None, env)
    assert images.is_ecr(host)
    assert auth["username"] == "AWS" and auth["password"] and auth["serveraddress"].startswith("https://")


# -- real engine and registry ---------------------------------------------------------------


@pytest.mark.docker
def test_templated_build_push_then_noop(tmp_path, git_remote, repo_names):
    name = unique_name()
    repo_names.append(name)
    settings = make_settings(tmp_path)
    image_settings = settings.images
    remote = git_remote(files={"definitions.py": DEFINITIONS.format(asset="hello", value=1)})
    spec = spec_for(name, remote.url, python_file="definitions.py")
    co = checkout(settings, spec)

    log = Collect()
    artifact = images.build_image(spec, co, image_settings, log)
    assert artifact.built and artifact.kind == "image"
    assert artifact.ref.startswith(f"{image_settings.registry}/dagster/{name}:{co.commit[:12]}-")
    assert any(line.startswith("Step ") for line in log.lines)  # build output reached the log
    client = images.docker_client(settings.env)
    config = client.api.inspect_image(artifact.ref)["Config"]
    assert config["User"] == "dagster" and "grpc-health-check" in " ".join(config["Healthcheck"]["Test"])
    # The runtime layer: the instance's compute log manager imports inside the image.
    out = client.containers.run(
        artifact.ref, ["python", "-c", "import meta_deployer_runtime.compute_logs, sys; print(sys.path[1])"],
        network_mode="host", remove=True,
    )
    assert images.RUNTIME_PYLIB in out.decode()

    published = images.push_image(spec, artifact, image_settings.registry, log)
    assert published.pushed and published.digest and published.digest.startswith("sha256:")
    assert images.registry_digest(client, artifact.ref, None) == published.digest

    # Nothing changed: the registry has the tag, so no build and no push.
    again = images.build_image(spec, co, image_settings, Collect())
    assert not again.built and again.metadata["in_registry"] and again.ref == artifact.ref
    republished = images.push_image(spec, again, image_settings.registry, Collect())
    assert not republished.pushed and republished.digest == published.digest

    # A code-only change reuses the dependency layer.
    remote.commit({"definitions.py": DEFINITIONS.format(asset="hello", value=2)})
    co2 = checkout(settings, spec)
    log2 = Collect()
    changed = images.build_image(spec, co2, image_settings, log2)
    assert changed.built and changed.ref != artifact.ref
    pip_step = next(i for i, line in enumerate(log2.lines) if "pip install" in line and line.startswith("Step "))
    assert "Using cache" in log2.lines[pip_step + 1]


@pytest.mark.docker
def test_own_dockerfile_src_layout_package(tmp_path, git_remote, repo_names):
    name = unique_name()
    repo_names.append(name)
    settings = make_settings(tmp_path)
    image_settings = settings.images
    remote = git_remote(files=OWN_DOCKERFILE)
    spec = spec_for(name, remote.url, package_name="src_layout_project.definitions")
    artifact = images.build_image(spec, checkout(settings, spec), image_settings, Collect())
    assert artifact.built and artifact.metadata["dockerfile"] == "repo"
    published = images.push_image(spec, artifact, image_settings.registry, Collect())
    assert published.digest


@pytest.mark.docker
def test_broken_import_is_refused_and_nothing_is_tagged_or_pushed(tmp_path, git_remote, repo_names):
    name = unique_name()
    repo_names.append(name)
    settings = make_settings(tmp_path)
    image_settings = settings.images
    remote = git_remote(files={"definitions.py": BROKEN})
    spec = spec_for(name, remote.url, python_file="definitions.py")
    co = checkout(settings, spec)
    with pytest.raises(ValidationFailed):
        images.build_image(spec, co, image_settings, Collect())
    client = images.docker_client(settings.env)
    plan = images.plan_build(spec, co, image_settings)
    ref = (
        f"{images.image_repository(name, image_settings.registry)}:"
        f"{images.image_tag(co.commit, plan.content_hash(images.local_image_id(client, image_settings.base_image)))}"
    )
    assert images.local_image_id(client, ref) is None
    assert images.registry_digest(client, ref, None) is None


@pytest.mark.docker
def test_failed_build_raises_image_build_error(tmp_path, git_remote, repo_names):
    name = unique_name()
    repo_names.append(name)
    settings = make_settings(tmp_path)
    remote = git_remote(files={
        "Dockerfile": "FROM python:3.12-slim\nRUN echo about to fail && false\n",
        "definitions.py": DEFINITIONS.format(asset="x", value=1),
    })
    spec = spec_for(name, remote.url, python_file="definitions.py")
    log = Collect()
    with pytest.raises(ImageBuildError):
        images.build_image(spec, checkout(settings, spec), settings.images, log)
    assert "about to fail" in "\n".join(log.lines)  # the failing step's output reached the run log
