"""The repo spec: ``repos/<name>/config.yml`` loaded into a strict, frozen model (pure).

A spec is the desired state of one code location. Loading it checks every
rule up front and reports every problem at once, naming the file and field and
saying what would be valid, so that nothing is written or deployed from a bad
spec.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import posixpath
import re
import stat
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from meta_deployer import naming
from meta_deployer.errors import SpecError

CONFIG_FILENAME = "config.yml"
DEFAULT_BRANCH = "main"
DEFAULT_CPU = 256
DEFAULT_MEMORY = 512

#: Valid Fargate task sizes: cpu units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

CODE_SOURCE_FIELDS = ("python_file", "module_name", "package_name")

#: The largest config.yml accepted; a bigger file is refused before it is read whole.
MAX_CONFIG_BYTES = 64 * 1024
#: The most items each list (environment, secrets, access.read) may hold.
MAX_LIST_ITEMS = 100
#: The deepest nesting of YAML collections a config.yml may use.
MAX_YAML_DEPTH = 20
#: The most YAML nodes (scalars, lists, mappings) a config.yml may hold: a full spec needs ~1200.
MAX_YAML_NODES = 2000
#: The longest message one problem may print (values quoted in it are cut).
MAX_PROBLEM_CHARS = 1000
#: Secret names every repo may reference (Secrets Manager; SSM parameters start with '/').
SHARED_SECRETS_PREFIX = "dagster/shared/"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
#: Environment names the platforms inject; a spec may not set them.
RESERVED_ENV_PREFIXES = ("META_DEPLOYER_", "DAGSTER_")
#: Names that change how the code server itself starts (interpreter, loader, shell, git).
STARTUP_ENV_NAMES = frozenset({"PATH", "HOME", "SHELL", "IFS", "BASH_ENV", "ENV", "VIRTUAL_ENV"})
STARTUP_ENV_PREFIXES = ("PYTHON", "LD_", "DYLD_", "GIT_")
#: Plain environment variables whose names say they hold a secret.
_SECRET_LIKE = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY)", re.I)
_ARN = re.compile(r"^arn:aws[a-z-]*:(secretsmanager|ssm):[a-z0-9-]+:\d{12}:[A-Za-z0-9/_+=.@:-]+\Z")
#: The full ARN of a Secrets Manager secret, as CreateSecret/DescribeSecret return it: the name, then ``-``
#: and the six random characters Secrets Manager appends ("The ARN includes the name of the secret followed by
#: six random characters", CreateSecret response). ECS ``secrets`` take "the full ARN of the AWS Secrets
#: Manager secret" (AWS::ECS::TaskDefinition Secret, ValueFrom), optionally followed by
#: ``:<json-key>:<version-stage>:<version-id>`` (ECS developer guide, secrets-envvar-secrets-manager.html),
#: so the bare ARN holds no further ``:``.
SECRETSMANAGER_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}\Z"
)


def secretsmanager_arn_problem(arn: str) -> str | None:
    """Why ``arn`` is not the full ARN of one Secrets Manager secret, or None."""
    if SECRETSMANAGER_SECRET_ARN.match(arn):
        return None
    return (
        f"{arn!r} is not the full ARN of a Secrets Manager secret: use the ARN that `aws secretsmanager "
        "describe-secret` prints, arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>, "
        "with no :<json-key> after it"
    )


_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_URL_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._/~-]+\Z")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def git_url_problem(url: str) -> str | None:
    """Why ``url`` may not be cloned, or None. Pure; shared by spec and CLI."""
    if not url or url != url.strip():
        return "must be a non-empty URL without surrounding spaces"
    if url.startswith("-"):
        return "must not start with '-' (git would read it as an option)"
    if any(ord(c) < 32 or c == "\x7f" for c in url) or " " in url:
        return "must not contain spaces or control characters"
    if url.startswith(_URL_SCHEMES):
        rest = url.split("://", 1)[1]
        authority = rest.split("/", 1)[0]
        if url.startswith(("https://", "http://")) and "@" in authority:
            return (
                "must not hold a user name, password or token before '@' (git would send it to the host, and run "
                "configs would store it); put the token in a file named by META_DEPLOYER_GIT_TOKEN_FILE (its host in "
                "META_DEPLOYER_GIT_TOKEN_HOSTS) and use the plain https://host/path URL"
            )
        if "@" in authority and ":" in authority.split("@", 1)[0]:
            return (
                "must not embed a password or token; put the token in a file named by META_DEPLOYER_GIT_TOKEN_FILE instead "
                "and use the plain https:// URL"
            )
        host = authority.split("@")[-1]
        if not url.startswith("file://") and not host:
            return "has no host"
        if host.startswith("-"):
            return "has a host starting with '-' (ssh would read it as an option)"
        return None
    if "::" in url:
        return "remote-helper URLs ('<transport>::<address>') are not allowed; use https://, ssh://, git://, file:// or a path"
    if _SCP_LIKE.match(url):
        return None
    if url.startswith(("/", "./", "../")) or url == ".":
        return None
    return (
        "is not a git URL this deployer accepts: use https://, ssh://, git://, file://, "
        "user@host:path, an absolute path or a path starting with './'"
    )


#: Longest branch name accepted: a ref is a file name under .git/refs on most filesystems (255 bytes).
MAX_BRANCH_LENGTH = 200


def branch_problem(branch: str) -> str | None:
    """Why ``branch`` is not a safe git branch name, or None."""
    if not branch:
        return "must be a non-empty branch name"
    if branch.startswith("-"):
        return "must not start with '-' (git would read it as an option)"
    if len(branch) > MAX_BRANCH_LENGTH:
        return f"is {len(branch)} characters long; at most {MAX_BRANCH_LENGTH} are allowed"
    if (
        _BAD_REF_CHARS.search(branch)
        or ".." in branch
        or "@{" in branch
        or "//" in branch
        or branch.startswith("/")
        or branch.endswith(("/", ".", ".lock"))
        or branch == "@"
        or any(part.startswith(".") for part in branch.split("/"))
    ):
        return f"{branch!r} is not a valid branch name (see 'git check-ref-format')"
    return None


def relative_path_problem(path: str) -> str | None:
    """Why ``path`` does not stay inside the repository, or None."""
    if not path or "\x00" in path or "\\" in path:
        return "must be a non-empty relative path using '/'"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "must be relative to the repository root, not absolute"
    if path.startswith("-"):
        return "must not start with '-'"
    normalized = posixpath.normpath(path)
    if normalized == ".." or normalized.startswith("../"):
        return "must stay inside the repository (no '..' that leaves it)"
    return None


def env_name_problem(name: str) -> str | None:
    """Why ``name`` may not be set in a location's environment (plain or secret), or None."""
    if not _ENV_NAME.match(name):
        return f"{name!r} is not an environment variable name (letters, digits, '_'; not starting with a digit)"
    if name.startswith(RESERVED_ENV_PREFIXES):
        return f"{name!r} is set by the deployer; names starting with {' or '.join(RESERVED_ENV_PREFIXES)} are reserved"
    if name in STARTUP_ENV_NAMES or name.startswith(STARTUP_ENV_PREFIXES):
        return (
            f"{name!r} would change how the code server itself starts (its interpreter, libraries, shell or git); "
            f"{', '.join(sorted(STARTUP_ENV_NAMES))} and names starting with {', '.join(STARTUP_ENV_PREFIXES)} are refused: "
            f"use a name of your own, for example MY_{name}"
        )
    return None


def secret_arn_problem(arn: str, repo: str) -> str | None:
    """Why the secret at ``arn`` is not one repo ``repo`` may read, or None. A repo reads only
    Secrets Manager names under ``dagster/<repo>/`` and SSM parameters under ``/dagster/<repo>/``,
    plus the platform's shared prefix (every prefix ends with '/': 'fin' never reaches 'finance')."""
    own, shared = f"dagster/{repo}/", SHARED_SECRETS_PREFIX
    if ":secretsmanager:" in arn:
        resource, allowed = arn.partition(":secret:")[2], (own, shared)
    else:
        resource, allowed = arn.partition(":parameter")[2], ("/" + own, "/" + shared)
    if any(resource.startswith(prefix) and len(resource) > len(prefix) for prefix in allowed):
        return None
    return (
        f"{arn!r} is outside this repo's secrets; a repo may only reference Secrets Manager secrets named "
        f"{own}<secret> or {shared}<secret> (arn:aws:secretsmanager:<region>:<account>:secret:{own}<secret>) "
        f"and SSM parameters named /{own}<parameter> or /{shared}<parameter> "
        f"(arn:aws:ssm:<region>:<account>:parameter/{own}<parameter>)"
    )


def _capped(v: Any, field: str) -> Any:
    if isinstance(v, (list, tuple, dict)) and len(v) > MAX_LIST_ITEMS:
        raise ValueError(f"{field} has {len(v)} items; at most {MAX_LIST_ITEMS} are allowed")
    return v


def _scalar_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @classmethod
    def model_fields_order(cls) -> list[str]:
        """The keys as written in config.yml, in declaration order (for output and error hints)."""
        return [f.alias or n for n, f in cls.model_fields.items()]


class EnvVar(_Strict):
    """One plain environment variable."""

    name: str
    value: Annotated[str, BeforeValidator(_scalar_to_str)]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        problem = env_name_problem(v)
        if problem:
            raise ValueError(problem)
        if _SECRET_LIKE.search(v):
            raise ValueError(
                f"{v!r} looks like a secret; secrets never go in plain environment variables: "
                "list it under 'secrets' with a valueFrom ARN (Secrets Manager or SSM)"
            )
        return v

    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        if "\x00" in v:
            raise ValueError("holds a NUL character, which no process environment can carry; remove it")
        return v


class SecretRef(_Strict):
    """A secret injected from AWS Secrets Manager or SSM by ARN (ECS platform)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    name: str
    value_from: str = Field(alias="valueFrom")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        problem = env_name_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("value_from")
    @classmethod
    def _arn(cls, v: str) -> str:
        if not _ARN.match(v):
            raise ValueError(
                f"{v!r} is not a Secrets Manager or SSM parameter ARN "
                "(for example arn:aws:secretsmanager:us-east-1:123456789012:secret:db-password)"
            )
        return v


class Resources(_Strict):
    """Fargate task size."""

    cpu: int = DEFAULT_CPU
    memory: int = DEFAULT_MEMORY

    @model_validator(mode="after")
    def _fargate_pair(self) -> "Resources":
        if self.cpu not in FARGATE_SIZES:
            raise ValueError(f"cpu {self.cpu} is not a Fargate size; use one of {sorted(FARGATE_SIZES)}")
        allowed = FARGATE_SIZES[self.cpu]
        if self.memory not in allowed:
            raise ValueError(
                f"memory {self.memory} is not allowed with cpu {self.cpu}; "
                f"use one of {allowed[0]}..{allowed[-1]} in steps of {allowed[1] - allowed[0] if len(allowed) > 1 else allowed[0]}"
                if len(allowed) > 3
                else f"memory {self.memory} is not allowed with cpu {self.cpu}; use one of {list(allowed)}"
            )
        return self


class Access(_Strict):
    """Cross-repo grants. Reading another repo's assets takes both sides: the reader lists the owner
    in ``read``, and the owner lists the reader in ``share_with`` (a tenant cannot grant itself
    another tenant's data by writing its own config.yml)."""

    read: tuple[str, ...] = ()
    share_with: tuple[str, ...] = ()

    @field_validator("read", mode="before")
    @classmethod
    def _list(cls, v: Any) -> Any:
        return tuple(_capped(v, "access.read")) if isinstance(v, list) else v

    @field_validator("share_with", mode="before")
    @classmethod
    def _share_list(cls, v: Any) -> Any:
        return tuple(_capped(v, "access.share_with")) if isinstance(v, list) else v

    @field_validator("read", "share_with")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for other in v:
            problem = naming.name_problem(other)
            if problem:
                raise ValueError(f"repo name {problem}")
        return tuple(sorted(set(v)))


#: The most locations one repository may declare in config.yml.
MAX_LOCATIONS = 20


class LocationSpec(_Strict):
    """One code location of a repository that holds several (``locations:`` in config.yml)."""

    name: str = Field(description="The location's name inside the repo; it deploys as <repo>-<name>.")
    python_file: str | None = Field(None, description="Definitions file, relative to working_directory.")
    module_name: str | None = Field(None, description="Importable module holding the Definitions.")
    package_name: str | None = Field(None, description="Importable package holding the Definitions.")
    working_directory: str | None = Field(None, description="The location's folder (relative to the repo root).")

    @field_validator("name")
    @classmethod
    def _label(cls, v: str) -> str:
        problem = naming.location_label_problem(v)
        if problem:
            raise ValueError(f"location name {problem}")
        return v

    @field_validator("python_file", "working_directory")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return RepoSpec._path(v)

    @field_validator("python_file")
    @classmethod
    def _py(cls, v: str | None) -> str | None:
        return RepoSpec._py(v)

    @field_validator("module_name", "package_name")
    @classmethod
    def _module(cls, v: str | None) -> str | None:
        return RepoSpec._module(v)

    @model_validator(mode="after")
    def _one_source(self) -> "LocationSpec":
        given = [f for f in CODE_SOURCE_FIELDS if getattr(self, f) is not None]
        if len(given) > 1:
            raise ValueError(f"set only one of python_file, module_name or package_name (got {', '.join(given)})")
        return self


class RepoSpec(_Strict):
    """The desired state of one code location, as written in ``repos/<name>/config.yml``."""

    name: str = Field(description="Repo and code location name: a DNS label, the folder name under repos/.")
    git_url: str = Field(description="Where to clone from (https, ssh, file:// or a local path).")
    branch: str = Field(DEFAULT_BRANCH, description="Branch to deploy; its head commit is pinned per deploy.")
    python_file: str | None = Field(None, description="Definitions file, relative to working_directory.")
    module_name: str | None = Field(None, description="Importable module holding the Definitions.")
    package_name: str | None = Field(None, description="Importable package holding the Definitions.")
    working_directory: str | None = Field(None, description="Folder (relative to the repo root) to run from; added to sys.path.")
    resources: Resources = Field(default_factory=Resources, description="Fargate cpu/memory pair.")
    s3_prefix: str | None = Field(None, description="Storage prefix; must be repos/<name>.")
    environment: tuple[EnvVar, ...] = Field((), description="Plain environment variables (never secrets).")
    secrets: tuple[SecretRef, ...] = Field((), description="Secrets as name/valueFrom ARN pairs.")
    access: Access = Field(default_factory=Access, description="Read access to other repos' assets.")
    locations: tuple[LocationSpec, ...] = Field(
        (),
        description="Several code locations in this one repository, each deployed as <name>-<location>.",
    )
    code_mounting: bool | None = Field(
        None,
        description=(
            "Serve the code from an archive of the commit fetched at start-up (a code-only change builds no "
            "image). Unset: on for templated repos, off for a repo with its own Dockerfile."
        ),
    )

    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, v: Any) -> Any:
        _capped(v, "environment")
        if isinstance(v, dict):  # also accept {NAME: value}
            return tuple({"name": k, "value": val} for k, val in v.items())
        return tuple(v) if isinstance(v, list) else v

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets(cls, v: Any) -> Any:
        _capped(v, "secrets")
        if isinstance(v, dict):  # also accept {NAME: arn}
            return tuple({"name": k, "valueFrom": arn} for k, arn in v.items())
        return tuple(v) if isinstance(v, list) else v

    @field_validator("locations", mode="before")
    @classmethod
    def _locations(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) > MAX_LOCATIONS:
            raise ValueError(f"locations has {len(v)} items; at most {MAX_LOCATIONS} are allowed")
        return tuple(v) if isinstance(v, list) else v

    @field_validator("secrets")
    @classmethod
    def _own_secrets(cls, v: tuple[SecretRef, ...], info: ValidationInfo) -> tuple[SecretRef, ...]:
        name = info.data.get("name")
        if name is None:  # the name itself is invalid and reported
            return v
        problems = [
            f"secrets[{i}].valueFrom {problem}"
            for i, secret in enumerate(v)
            if (problem := secret_arn_problem(secret.value_from, name))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("code_mounting", mode="before")
    @classmethod
    def _code_mounting(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, bool):
            raise ValueError(
                f"must be true or false (got {v!r}); true serves the code from an archive of each commit, so a "
                "code-only change builds no image"
            )
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        problem = naming.name_problem(v)
        if problem:
            raise ValueError(f"repo name {problem}")
        return v

    @field_validator("git_url")
    @classmethod
    def _git_url(cls, v: str) -> str:
        problem = git_url_problem(v)
        if problem:
            raise ValueError(f"git URL {problem}")
        return v

    @field_validator("branch")
    @classmethod
    def _branch(cls, v: str) -> str:
        problem = branch_problem(v)
        if problem:
            raise ValueError(f"branch {problem}")
        return v

    @field_validator("python_file", "working_directory")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is None:
            return v
        problem = relative_path_problem(v)
        if problem:
            raise ValueError(f"path {v!r} {problem}")
        return posixpath.normpath(v)

    @field_validator("python_file")
    @classmethod
    def _py(cls, v: str | None) -> str | None:
        if v is not None and not v.endswith(".py"):
            raise ValueError(f"{v!r} is not a .py file; use module_name or package_name for modules")
        return v

    @field_validator("module_name", "package_name")
    @classmethod
    def _module(cls, v: str | None) -> str | None:
        if v is not None and not _MODULE.match(v):
            raise ValueError(f"{v!r} is not a dotted Python module name (for example 'my_project.definitions')")
        return v

    @model_validator(mode="after")
    def _cross_fields(self) -> "RepoSpec":
        given = [f for f in CODE_SOURCE_FIELDS if getattr(self, f) is not None]
        if len(given) > 1:
            raise ValueError(f"set only one of python_file, module_name or package_name (got {', '.join(given)})")
        expected = naming.s3_prefix(self.name)
        if self.s3_prefix is not None and self.s3_prefix.rstrip("/") != expected:
            raise ValueError(f"s3_prefix must be {expected!r} (the repo's own prefix), got {self.s3_prefix!r}")
        names = [e.name for e in self.environment] + [s.name for s in self.secrets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"environment/secrets set {', '.join(dupes)} more than once")
        if self.name in self.access.read:
            raise ValueError("access.read lists the repo itself; a repo always reads its own prefix")
        if self.name in self.access.share_with:
            raise ValueError("access.share_with lists the repo itself; a repo always reads its own prefix")
        if self.locations:
            top = [f for f in (*CODE_SOURCE_FIELDS, "working_directory") if getattr(self, f) is not None]
            if top:
                raise ValueError(
                    f"{', '.join(top)} and locations are set together: with locations, each location names its "
                    "own code source and working_directory"
                )
            labels = [loc.name for loc in self.locations]
            dupes = sorted({n for n in labels if labels.count(n) > 1})
            if dupes:
                raise ValueError(f"locations name {', '.join(dupes)} more than once")
            names = [naming.location_name(self.name, label) for label in labels]
            if len(set(names)) != len(names):
                raise ValueError("two locations shorten to the same deployed name; rename one")
        return self

    # -- derived values ----------------------------------------------------
    @property
    def prefix(self) -> str:
        """The storage prefix, ``repos/<name>`` (no trailing slash)."""
        return naming.s3_prefix(self.name)

    @property
    def code_source(self) -> tuple[str, str] | None:
        """``(kind, value)`` for the code source, or None when it must be detected."""
        for f in CODE_SOURCE_FIELDS:
            value = getattr(self, f)
            if value is not None:
                return f, value
        return None

    def location_specs(self) -> list["RepoSpec"]:
        """The deployed specs: one per entry of ``locations`` (named ``<name>-<location>``, its own
        code source, working directory, storage prefix, role and service; every other field shared),
        or this spec alone when it declares none."""
        if not self.locations:
            return [self]
        specs = []
        for loc in self.locations:
            fields = {f: getattr(loc, f) for f in (*CODE_SOURCE_FIELDS, "working_directory")}
            specs.append(
                self.model_copy(update={"name": naming.location_name(self.name, loc.name), "locations": (),
                                        "s3_prefix": None, **fields})
            )
        return specs

    def to_config(self) -> dict[str, Any]:
        """The spec as config.yml / run config data: defaults and empty values left out."""
        data = self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True, mode="json")
        data["name"] = self.name
        data["git_url"] = self.git_url
        data["branch"] = self.branch
        return {k: data[k] for k in self.model_fields_order() if k in data}

    def content_hash(self) -> str:
        """A stable hash of the spec's meaning (not of its formatting)."""
        data = self.model_dump(mode="json", by_alias=True)
        if data.get("code_mounting") is None:
            data.pop("code_mounting", None)  # unset: the hash of every spec written before the field stays
        if not (data.get("access") or {}).get("share_with"):
            data.get("access", {}).pop("share_with", None)  # likewise for specs that share nothing
        if not data.get("locations"):
            data.pop("locations", None)  # likewise for single-location specs
        canonical = json.dumps(data, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _problems(exc: ValidationError, data: Any) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            valid = model.model_fields_order() if model else []
            close = difflib.get_close_matches(loc[-1], valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = f"unknown key; {hint}valid keys here: {', '.join(valid)}"
        elif err["type"] == "missing":
            msg = "is required"
        elif err["type"].endswith("_type"):
            msg = f"{msg} (got {type(err.get('input')).__name__}: {err.get('input')!r})"
        if len(msg) > MAX_PROBLEM_CHARS:  # a message may quote a value: never echo a whole file
            msg = msg[:MAX_PROBLEM_CHARS] + f"... ({len(msg) - MAX_PROBLEM_CHARS} more characters cut)"
        problems.append((field[:200], msg))
    return problems


def _model_at(loc: list[str]) -> type[_Strict] | None:
    model: type[_Strict] = RepoSpec
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, _Strict)), None)
        if nxt is None:
            return None
        model = nxt
    return model




def parse_spec(data: Any, source: str, expected_name: str | None = None) -> RepoSpec:
    """Validate ``data`` into a RepoSpec; raise SpecError naming ``source`` and each field."""
    if not isinstance(data, dict):
        raise SpecError(source, [("", f"must be a mapping of keys to values, got {type(data).__name__}")])
    try:
        spec = RepoSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, _problems(exc, data)) from None
    if expected_name is not None and spec.name != expected_name:
        raise SpecError(
            source, [("name", f"is {spec.name!r} but the folder is {expected_name!r}; they must match")]
        )
    return spec


class _ConfigLoader(yaml.SafeLoader):
    """YAML for config.yml: safe types only, and no anchors or aliases (they expand without
    bound: 'billion laughs'), no merge keys, no duplicate keys, at most MAX_YAML_DEPTH levels,
    MAX_LIST_ITEMS items per list or mapping and MAX_YAML_NODES values in all (parsing stops
    there, not at the end of the file: pure-Python YAML costs tens of microseconds a value)."""

    _depth = 0
    _nodes = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # The scanner reads ahead through '[' and '{' before the composer sees a node: stop it early.
        if self.flow_level >= MAX_YAML_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors (&name) and aliases (*name) are not allowed in config.yml; write each value out",
                event.start_mark,
            )
        if parent is not None and len(parent.value) >= MAX_LIST_ITEMS:
            raise yaml.composer.ComposerError(
                "in a list or mapping", parent.start_mark,
                f"more than {MAX_LIST_ITEMS} items; lists (environment, secrets, access.read) hold at most {MAX_LIST_ITEMS}",
                event.start_mark,
            )
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_YAML_NODES} values in all; a config.yml needs far fewer", event.start_mark
            )
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise yaml.constructor.ConstructorError(
                        None, None, "merge keys (<<) are not allowed in config.yml; write each key out", key_node.start_mark
                    )
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable: SafeConstructor reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None,
                        f"duplicate key {key!r} (first set on line {first}); set each key once",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _too_big(path: Path, size: str) -> SpecError:
    return SpecError(str(path), [("", f"is {size} bytes; a config.yml may hold at most {MAX_CONFIG_BYTES} bytes")])


def read_config_bytes(path: Path) -> bytes:
    """The bytes of a config file, at most MAX_CONFIG_BYTES: the size is checked before the file
    is read, and never more than the cap (plus one byte) is read. SpecError naming the file."""
    try:
        # A link would let a config.yml read any file the deployer can (another repo's record, a
        # host file) and echo its values back in errors: the file and its folder must be real.
        if path.is_symlink() or path.parent.is_symlink():
            raise SpecError(str(path), [("", "is a symbolic link (or sits in a linked folder); a config.yml must be a regular file in repos/<name>/")])
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(str(path), [("", "is not a regular file")])
        if info.st_size > MAX_CONFIG_BYTES:
            raise _too_big(path, str(info.st_size))
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise SpecError(str(path), [("", f"cannot be read: {exc.strerror}")]) from None
    if len(data) > MAX_CONFIG_BYTES:  # it grew after the stat
        raise _too_big(path, f"more than {MAX_CONFIG_BYTES}")
    return data


def spec_from_bytes(data: bytes, source: str, expected_name: str | None = None) -> RepoSpec:
    """Decode (UTF-8), parse (restricted YAML) and validate config.yml bytes; SpecError naming ``source``."""
    if len(data) > MAX_CONFIG_BYTES:
        raise SpecError(source, [("", f"is {len(data)} bytes; a config.yml may hold at most {MAX_CONFIG_BYTES} bytes")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(source, [("", f"is not UTF-8 at byte {exc.start}; save it as UTF-8 text")]) from None
    try:
        parsed = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise SpecError(source, [("", f"is not valid YAML: {exc}")]) from None
    except RecursionError:
        raise SpecError(source, [("", f"is not valid YAML: nested deeper than {MAX_YAML_DEPTH} levels")]) from None
    return parse_spec(parsed, source, expected_name=expected_name)


def load_spec(path: Path) -> RepoSpec:
    """Load and validate ``repos/<name>/config.yml``; the name must match its folder."""
    return spec_from_bytes(read_config_bytes(path), str(path), expected_name=path.parent.name)


def dump_spec(spec: RepoSpec) -> str:
    """Render a spec as config.yml text (stable key order)."""
    header = "# Desired state of one code location; see README.md 'config.yml reference'.\n"
    return header + yaml.safe_dump(spec.to_config(), sort_keys=False)


def config_path(repos_dir: Path, name: str) -> Path:
    """``<repos_dir>/<name>/config.yml`` for a validated name."""
    return repos_dir / naming.validate_name(name) / CONFIG_FILENAME
