"""``meta-deployer``: the command line behind the Make targets.

Deploys always run as Dagster jobs (``dagster job execute``), so the Make
targets ask this CLI for a validated run config first; a bad argument stops
there, before anything is written. Arguments come from the command line or
from the Make variables, which the Makefile exports as environment variables
(so no user value is ever spliced into a shell command).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import yaml

from meta_deployer import naming
from meta_deployer.errors import MetaDeployerError, SettingsError, SpecError
from meta_deployer.settings import Settings
from meta_deployer.spec import parse_spec

EXIT_USAGE = 2


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _require_name(value: str | None, var: str = "REPO_NAME") -> str:
    if not value:
        raise SpecError(var, [("", f"is required: {var}=<name> (a DNS label such as team-sales)")])
    problem = naming.name_problem(value)
    if problem:
        raise SpecError(var, [("", f"repo name {problem}")])
    return value


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def _spec_from_args(job: str, args: argparse.Namespace, settings: Settings):
    """The spec an add or update would deploy, from the arguments and repos/<name>/config.yml (the local
    file, or the configuration repository's when META_DEPLOYER_CONFIG_GIT_URL is set)."""
    from meta_deployer.configsource import configured_spec

    name = _require_name(args.name or _env("REPO_NAME"))
    where, current = configured_spec(settings, name)
    if job == "update" and current is None:
        parent = _parent_of(settings, name)
        if parent is not None:  # one location of a repository with several: update the repository
            print(f"{name} is a location of {parent}: updating {parent} (its unchanged locations stay as they are)", file=sys.stderr)
            name = parent
            where, current = configured_spec(settings, name)
    if job == "update":
        if current is None:
            raise SpecError(where, [("", f"does not exist; add the repo first: make add-repo REPO_URL=... REPO_NAME={name}")])
        return current
    url = args.url or _env("REPO_URL")
    data: dict = {}
    if current is not None:
        data = current.to_config()
        if url and url != data["git_url"]:
            raise SpecError(
                where,
                [("git_url", f"{name} already exists with git_url {data['git_url']!r}; "
                  f"to move it, edit config.yml and run update-repo, or remove-repo REPO_NAME={name} first")],
            )
    elif not url:
        raise SpecError("REPO_URL", [("", "is required: REPO_URL=<git URL> (https://, ssh://, file:// or a path)")])
    data["name"] = name
    if url:
        data["git_url"] = url
    branch = args.branch or _env("BRANCH")
    if branch:
        data["branch"] = branch
    python_file = args.python_file or _env("PYTHON_FILE")
    module_name = args.module_name or _env("MODULE_NAME")
    working_directory = args.working_directory or _env("WORKING_DIRECTORY")
    if working_directory:  # one folder of a repository with several candidates
        data.pop("locations", None)
        data["working_directory"] = working_directory
        if not (python_file or module_name):
            for key in ("python_file", "module_name", "package_name"):
                data.pop(key, None)
    if python_file or module_name:
        data.pop("locations", None)
        for key in ("python_file", "module_name", "package_name"):
            data.pop(key, None)
        if python_file:
            data["python_file"] = python_file
        if module_name:
            data["module_name"] = module_name
    return parse_spec(data, "make add-repo arguments (REPO_URL, REPO_NAME, BRANCH, WORKING_DIRECTORY, PYTHON_FILE, MODULE_NAME)")


def _parent_of(settings: Settings, name: str) -> str | None:
    """The repository ``name`` is one location of (its deployment record says so), or None."""
    from meta_deployer.state import record_store

    record = record_store(settings).get(name)
    return record.parent if record is not None and record.parent and record.parent != name else None


def _locations_of(settings: Settings, name: str) -> list[str]:
    """The deployed locations of repository ``name`` when it holds several (else [])."""
    from meta_deployer.state import record_store

    return sorted(n for n, r in record_store(settings).all().items() if r.parent == name and n != name)


def _job_run(args: argparse.Namespace) -> tuple[dict, dict[str, str]]:
    """The validated run config and run tags of a deploy or removal job (a bad argument raises here)."""
    from meta_deployer.runconfig import deploy_run_config, remove_run_config, rollback_run_config

    if args.job == "remove":
        name = _require_name(args.name or _env("REPO_NAME"))
        config = remove_run_config(name, purge=args.purge or _flag(_env("PURGE")))
    elif args.job == "rollback":
        name = _require_name(args.name or _env("REPO_NAME"))
        config = rollback_run_config(name, _require_deployment(getattr(args, "to", None) or _env("TO")))
    else:
        config = deploy_run_config(_spec_from_args(args.job, args, Settings.from_env()))
    op_name = {"remove": "remove", "rollback": "rollback_checkout"}.get(args.job, "clone")
    return config, {naming.RUN_TAG_KEY: config["ops"][op_name]["config"]["name"]}


def _require_deployment(value: str | None) -> str:
    """TO=: a deployment id (the run id that deployed it) or a commit (7 to 40 hex digits)."""
    from meta_deployer.runconfig import deployment_ref_problem

    if not value:
        raise SettingsError("TO is required: TO=<deployment id or commit> (GET /v1/repositories/<name>/deployments "
                            "lists them, as does the code_locations/<name> asset in the UI)")
    problem = deployment_ref_problem(value)
    if problem:
        raise SettingsError(f"TO: {problem}")
    return value


def cmd_run_config(args: argparse.Namespace) -> int:
    """Print the run config of a deploy or removal job, after validating every argument."""
    config, tags = _job_run(args)
    if args.tags_out:  # the run tags too, in the same process (one Python start-up less per Make target)
        Path(args.tags_out).write_text(json.dumps(tags))
    sys.stdout.write(yaml.safe_dump(config, sort_keys=False))
    return 0


#: ``submit`` job argument -> the meta_deployer job it launches.
SUBMIT_JOBS = {"add": "add_repo", "update": "update_repo", "remove": "remove_repo", "sync": "sync_repos",
               "rollback": "rollback_repo"}


def cmd_submit(args: argparse.Namespace) -> int:
    """Launch add/update/remove/sync on the remote instance at META_DEPLOYER_DAGSTER_URL and follow the run.

    The arguments are validated exactly as ``run-config`` does, before anything is sent.
    """
    import requests

    from meta_deployer import remote

    url = args.url_of_instance or Settings.from_env().dagster_url
    if not url:
        raise remote.RemoteRunError("META_DEPLOYER_DAGSTER_URL is required: the URL of the central Dagster webserver")
    config, tags = ({}, {}) if args.job == "sync" else _job_run(args)
    try:
        return remote.submit(url.rstrip("/"), SUBMIT_JOBS[args.job], config, tags, timeout=args.timeout)
    except (requests.RequestException, RuntimeError) as exc:  # unreachable, or GraphQL errors
        raise remote.RemoteRunError(f"the Dagster webserver at {url}: {exc}") from None


def cmd_dry_run(args: argparse.Namespace) -> int:
    """Print what add/update/remove would do (DRY_RUN=1); change nothing."""
    from meta_deployer.pipeline import Deployer

    settings = Settings.from_env()
    if args.job == "rollback":
        raise SettingsError("DRY_RUN=1 is not supported by rollback-repo: GET /v1/repositories/<name>/deployments "
                            "lists the deployments it may serve again")
    deployer = Deployer(settings)
    if args.job == "remove":
        name = _require_name(args.name or _env("REPO_NAME"))
        print(deployer.dry_run_remove(name, purge=args.purge or _flag(_env("PURGE"))))
    else:
        print(deployer.dry_run(_spec_from_args(args.job, args, settings)))
    return 0


def cmd_run_tags(args: argparse.Namespace) -> int:
    """Print the run tags (JSON) for ``dagster job execute --tags``."""
    name = _require_name(args.name or _env("REPO_NAME"))
    print(json.dumps({naming.RUN_TAG_KEY: name}))
    return 0


def cmd_render_workspace(args: argparse.Namespace) -> int:
    """Re-render workspace.yaml from the deployed state."""
    from meta_deployer.pipeline import Deployer

    changed = Deployer().render_workspace()
    print(f"workspace.yaml {'updated' if changed else 'up to date'}")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """``make dev``: the dev code servers, the webserver and the daemon (``meta_deployer.devrun``)."""
    from meta_deployer import devrun

    return devrun.run(args.host, args.port, Path(args.workspace) if args.workspace else None)


def cmd_dev_servers(args: argparse.Namespace) -> int:
    """Start/adopt (up), stop (down) or show (status) the dev platform's code servers."""
    from meta_deployer import devrun

    if args.action == "up":
        devrun.servers_up()
    elif args.action == "down":
        print(f"stopped {devrun.servers_down()} dev code server(s)")
    else:
        rows = [[name, endpoint, status, str(pid)] for name, endpoint, status, pid in devrun.servers_status()]
        print(_table(rows, ["NAME", "ENDPOINT", "STATUS", "SUPERVISOR PID"]) if rows else "no dev code servers")
    return 0


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _live_statuses(settings) -> dict[str, dict] | None:
    """``{location: {"status": ...}}`` across every webserver replica; None when none answers.

    A location every answering replica sees alike shows that status; one the replicas
    disagree on shows each replica's (``web-1: LOADED; web-2: not in webserver``), so a
    replica that missed a reload stands out. A replica that does not answer is named on stderr.
    """
    from meta_deployer import discovery
    from meta_deployer.webserver import replica_statuses

    found = discovery.discover(settings)
    for note in found.notes:
        print(note, file=sys.stderr)
    per_replica = replica_statuses(found.replicas, timeout=3)
    answered = {name: statuses for name, statuses in per_replica.items() if statuses is not None}
    for name in per_replica:
        if name not in answered and len(per_replica) > 1:
            print(f"warning: webserver {name} did not answer", file=sys.stderr)
    if not answered:
        return None
    merged: dict[str, dict] = {}
    for location in sorted({loc for statuses in answered.values() for loc in statuses}):
        seen = {name: statuses.get(location, {}).get("status", "not in webserver") for name, statuses in answered.items()}
        simple = {("load error" if s.startswith("ERROR") else s) for s in seen.values()}
        if len(simple) == 1:
            status = next(iter(seen.values()))
        else:
            status = "; ".join(f"{name}: {'load error' if s.startswith('ERROR') else s}" for name, s in seen.items())
        merged[location] = {"status": status}
    return merged


def cmd_list_repos(args: argparse.Namespace) -> int:
    """A table of every repo: configured, deployed, and what serves it now."""
    from meta_deployer import configsource
    from meta_deployer.pipeline import Deployer

    deployer = Deployer()
    records = deployer.registry.all()
    corrupt = deployer.registry.store.corrupt()
    observed = deployer.platform.observe()
    try:
        _, configs = configsource.scan(deployer.settings)
    except MetaDeployerError as exc:  # the records still say what is deployed
        print(f"warning: {exc}", file=sys.stderr)
        configs = {}
    for name, cfg in list(configs.items()):  # a repository with several locations: one row per location
        if cfg.spec is not None and cfg.spec.locations:
            del configs[name]
            for part in cfg.spec.location_specs():
                configs[part.name] = replace(cfg, name=part.name, spec=part)
    live = _live_statuses(deployer.settings)
    if hasattr(deployer.platform, "platform_services"):  # ecs: the platform's own services first
        services = deployer.platform.platform_services()
        print(_table(
            [[r["service"], r["state"], f"{r['running']}/{r['desired']}", r["rollout"] or "", r["logs"]] for r in services],
            ["PLATFORM SERVICE", "STATE", "RUNNING", "ROLLOUT", "LOGS (repo-logs REPO_NAME=)"],
        ))
        print()
    rows = []
    for name in sorted(set(records) | set(configs) | set(observed) | set(corrupt)):
        record, seen, cfg = records.get(name), observed.get(name), configs.get(name)
        spec = cfg.spec if cfg else None
        if cfg and cfg.error:
            status = "invalid config.yml"
        elif name in corrupt:
            status = "corrupt record (redeploy to repair)"
        elif record is None and seen is None:
            status = "not deployed"
        elif seen is not None:  # what runs (e.g. a code server's health), after what the webserver says
            in_webserver = (live or {}).get(name, {}).get("status")
            if in_webserver:
                in_webserver = "load error" if in_webserver.startswith("ERROR") else in_webserver
            status = f"{in_webserver}; {seen.status}" if in_webserver else seen.status
        elif live is not None:
            status = live.get(name, {}).get("status", "not in webserver")
            status = status if not status.startswith("ERROR") else "load error"
        else:
            status = "deployed" if deployer.platform.is_serving(name, asdict(record)) else "missing"
        commit = (record.commit if record else (seen.commit if seen else None)) or ""
        digest = (record.digest if record else None) or (seen.details.get("digest") if seen else None) or ""
        rows.append([
            name,
            (record.git_url if record else spec.git_url if spec else ""),
            (record.branch if record else spec.branch if spec else ""),
            commit[:12],
            digest.replace("sha256:", "")[:12],
            ((record.metadata or {}).get("dagster_version") if record else None) or "",
            (record.platform if record else deployer.platform.name),
            status,
            (record.endpoint if record else (seen.endpoint if seen else "")) or "",
        ])
    if not rows:
        print(f"no repos: add one with make add-repo REPO_URL=... REPO_NAME=... (config files live in {configsource.describe(deployer.settings)})")
        return 0
    from meta_deployer.gitops import redact

    print(redact(_table(rows, ["NAME", "GIT URL", "BRANCH", "COMMIT", "DIGEST", "DAGSTER", "PLATFORM", "STATUS", "ENDPOINT"])))
    for problem in corrupt.values():
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def cmd_repo_logs(args: argparse.Namespace) -> int:
    """Print the code server output of one repo (FOLLOW=1 to follow)."""
    from meta_deployer.pipeline import Deployer

    raw = args.name or _env("REPO_NAME")
    follow = args.follow or _flag(_env("FOLLOW"))
    short = naming.platform_target(raw or "")
    if short is not None:  # platform/webserver, platform/daemon, platform/deployer: the platform's own logs
        platform = Deployer().platform
        if not hasattr(platform, "platform_logs"):
            raise SettingsError(f"REPO_NAME={raw} names a platform service: those run on the ecs platform only")
        lines = platform.platform_logs(short, follow=follow, tail=args.tail)
    else:
        deployer = Deployer()
        name = _require_name(raw)
        parts = _locations_of(deployer.settings, name)
        if parts:  # a repository with several locations: each one's output, one after the other
            def each() -> Iterator[str]:
                for part in parts:
                    yield f"==> {part} <=="
                    yield from deployer.platform.logs(part, follow=False, tail=args.tail)

            lines = each()
        else:
            lines = deployer.platform.logs(name, follow=follow, tail=args.tail)
    try:
        for line in lines:
            print(line, flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy one repo from its config.yml without Dagster (benchmarks and debugging)."""
    from meta_deployer.pipeline import Deployer

    deployer = Deployer()
    deployer.deploy(deployer.spec_from_file(_require_name(args.name)))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check every repos/<name>/config.yml of the configured source (the local folder, or the configuration
    repository's branch head) as the sensor would; exit 1 on errors."""
    from meta_deployer import configsource

    settings = Settings.from_env()
    source, scanned = configsource.scan(settings)
    if source.from_git:
        print(f"configs of {source.label}")
    errors = [item.error for item in scanned.values() if item.error]
    for item in scanned.values():
        print(f"{'invalid' if item.error else 'ok':8} {item.path}")
    for error in errors:
        print(f"\n{error}", file=sys.stderr)
    if not scanned:
        print(f"no config.yml files under {source.label or settings.repos_dir}")
    return 1 if errors else 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Create the shared AWS pieces of the ecs platform (DRY_RUN=1: print the plan only)."""
    from meta_deployer.platforms.aws.bootstrap import bootstrap

    bootstrap(Settings.from_env(), dry_run=args.dry_run or _flag(_env("DRY_RUN")))
    return 0


def cmd_instance_config(args: argparse.Namespace) -> int:
    """Print the production instance's dagster.yaml, rendered from the settings (ecs platform)."""
    from meta_deployer.platforms.aws.instance import instance_yaml

    sys.stdout.write(instance_yaml(Settings.from_env().ecs))
    return 0


def cmd_platform(args: argparse.Namespace) -> int:
    """``make platform`` / ``platform-down``: the webserver, daemon and deployer on ECS (DRY_RUN=1: plan only)."""
    from meta_deployer.platforms.aws.platform import platform_down, platform_up

    settings = Settings.from_env()
    dry_run = args.dry_run or _flag(_env("DRY_RUN"))
    if args.action == "up":
        platform_up(settings, dry_run=dry_run)
    else:
        platform_down(settings, purge=args.purge or _flag(_env("PURGE")), dry_run=dry_run)
    return 0


def cmd_platform_local(args: argparse.Namespace) -> int:
    """``make platform-local`` / ``platform-local-down``: the production topology on the local engine."""
    from meta_deployer import rehearsal

    env = dict(os.environ)
    if args.action == "down":
        rehearsal.down(env, purge=_flag(_env("PURGE")), log=print)
        return 0
    config_url = env.get("META_DEPLOYER_CONFIG_GIT_URL")
    if not config_url:
        raise SettingsError(
            "make platform-local needs META_DEPLOYER_CONFIG_GIT_URL: the configuration repository whose "
            "repos/<name>/config.yml files the platform deploys (for example git://127.0.0.1/config.git)"
        )
    port = int(env.get("DAGSTER_PORT") or 3000)
    topology = rehearsal.Topology(
        config_git_url=config_url,
        postgres_url=env.get("DAGSTER_POSTGRES_URL") or env.get("MD_POSTGRES_URL") or rehearsal.DEFAULT_POSTGRES_URL,
        engine_tcp=env.get("MD_DOCKER_TCP") or "tcp://127.0.0.1:2375",
        port=port,
        registry=env.get("META_DEPLOYER_REGISTRY") or None,
        base_image=env.get("META_DEPLOYER_BASE_IMAGE") or "python:3.12-slim",
        extra_env=rehearsal.passed_through(env),
    )
    rehearsal.up(topology, env, log=print)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    """``make api``: the REST API (meta_deployer.api) with uvicorn; --openapi prints its OpenAPI document."""
    from meta_deployer.api import server

    if args.openapi:
        return server.print_openapi()
    port = args.port if args.port is not None else int(_env("API_PORT") or 3001)
    return server.serve(args.host or _env("API_HOST") or "127.0.0.1", port)


def cmd_api_token(args: argparse.Namespace) -> int:
    """``make api-token SCOPES=...``: store a new token's hash; print the token once, alone on the last line."""
    from meta_deployer.api import server

    return server.create_token(args.scopes or _env("SCOPES") or "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meta-deployer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command, func, text in (
        ("run-config", cmd_run_config, "print a validated run config for add/update/remove"),
        ("dry-run", cmd_dry_run, "print what add/update/remove would do, changing nothing"),
    ):
        p = sub.add_parser(command, help=text)
        p.add_argument("job", choices=["add", "update", "remove", "rollback"])
        for option in ("--name", "--url", "--branch", "--python-file", "--module-name", "--working-directory", "--to"):
            p.add_argument(option)
        p.add_argument("--purge", action="store_true")
        if command == "run-config":
            p.add_argument("--tags-out", help="also write the run tags (JSON) to this file")
        p.set_defaults(func=func)
    p = sub.add_parser("submit", help="launch add/update/remove/sync on META_DEPLOYER_DAGSTER_URL and follow it")
    p.add_argument("job", choices=list(SUBMIT_JOBS))
    for option in ("--name", "--url", "--branch", "--python-file", "--module-name", "--working-directory", "--to"):
        p.add_argument(option)
    p.add_argument("--purge", action="store_true")
    p.add_argument("--dagster-url", dest="url_of_instance", help="the webserver (default: META_DEPLOYER_DAGSTER_URL)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to follow the run before giving up")
    p.set_defaults(func=cmd_submit)
    p = sub.add_parser("run-tags", help="print the run tags for a repo")
    p.add_argument("--name")
    p.set_defaults(func=cmd_run_tags)
    p = sub.add_parser("render-workspace", help="re-render workspace.yaml from the deployed state")
    p.set_defaults(func=cmd_render_workspace)
    p = sub.add_parser("dev", help="make dev: start/adopt the dev code servers, run the webserver and daemon, stop all on exit")
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=3000)
    p.add_argument("-w", "--workspace", help="workspace file (default: META_DEPLOYER_WORKSPACE)")
    p.set_defaults(func=cmd_dev)
    p = sub.add_parser("dev-servers", help="the dev platform's code servers: up (start/adopt), down (stop), status")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_dev_servers)
    p = sub.add_parser("list-repos", help="show every repo and its status")
    p.set_defaults(func=cmd_list_repos)
    p = sub.add_parser("repo-logs", help="show a repo's code server output (platform/webserver, daemon, deployer: the platform's)")
    p.add_argument("--name")
    p.add_argument("--follow", action="store_true")
    p.add_argument("--tail", type=int, default=200)
    p.set_defaults(func=cmd_repo_logs)
    p = sub.add_parser("validate", help="check every repos/<name>/config.yml")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("bootstrap", help="create the shared AWS pieces (ecs platform)")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_bootstrap)
    p = sub.add_parser("instance-config", help="print the production instance's dagster.yaml (ecs platform)")
    p.set_defaults(func=cmd_instance_config)
    p = sub.add_parser("platform", help="create (up) or remove (down) the platform's services on ECS")
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--purge", action="store_true")
    p.set_defaults(func=cmd_platform)
    p = sub.add_parser("platform-local", help="bring the local rehearsal of the platform up or down")
    p.add_argument("action", choices=["up", "down"])
    p.set_defaults(func=cmd_platform_local)
    p = sub.add_parser("api", help="serve the REST API (API_HOST, API_PORT)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--openapi", action="store_true", help="print the OpenAPI document and exit")
    p.set_defaults(func=cmd_api)
    p = sub.add_parser("api-token", help="create an API token (SCOPES=admin|read|repo:<name>,...)")
    p.add_argument("--scopes")
    p.set_defaults(func=cmd_api_token)
    p = sub.add_parser("deploy", help="deploy one repo directly (no Dagster run)")
    p.add_argument("name")
    p.set_defaults(func=cmd_deploy)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MetaDeployerError as exc:
        from meta_deployer.gitops import redact

        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
