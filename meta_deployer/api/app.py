"""The Repository Manager Service: a REST API in front of the deploy jobs (FastAPI; ``make api``).

Every change it makes is a Dagster run of the ``meta_deployer`` location (``add_repo``, ``update_repo``,
``rollback_repo``, ``remove_repo``), launched over the webserver's GraphQL API, so the UI shows it and the
same rules hold as for the Make targets and the sensor (the per-repo run limit and deploy lease, the
config model, the history). The service itself reads only: config files and deployment records through
the pure modules, runs, events and materializations over GraphQL. It imports no deploy step.

    GET    /v1/repositories                       every repo (what list-repos shows)
    GET    /v1/repositories/{name}                one repo and its last operations
    PUT    /v1/repositories/{name}                desired state (the config.yml schema): 201 new, 200 changed/unchanged
    DELETE /v1/repositories/{name}[?purge=true]   remove_repo
    POST   /v1/repositories/{name}/deployments    update_repo (the branch head)
    GET    /v1/repositories/{name}/deployments    the deploy history (code_locations/<name>)
    POST   /v1/repositories/{name}/rollback       rollback_repo to an earlier deployment
    GET    /v1/repositories/{name}/logs           the code server's output
    GET    /v1/operations/{id}[/events]           a run: phase, status, log tail; or its events as SSE
    POST   /v1/webhooks/github|gitlab             push-to-deploy (signed)
    GET    /healthz, /openapi.json

A repository with several code locations (config.yml ``locations:``) is one repository here: it is listed
once, under its name, with a ``locations`` list; its deployments and logs are those of all its locations;
mutations launch the jobs with the repository's name, which act on every location. A location's own name
(``<repo>-<location>``) is no repository: every route answers 404 naming the repository to use.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import meta_deployer
from meta_deployer import configsource, history, naming, remote
from meta_deployer.api import dagster
from meta_deployer.api.auth import IdempotencyStore, RateLimiter, SeenDeliveries, Stored, Token, token_store
from meta_deployer.api.problems import Problem, from_problem, problem_response
from meta_deployer.errors import MetaDeployerError, SpecError
from meta_deployer.gitops import redact
from meta_deployer.runconfig import deploy_run_config, deployment_ref_problem, remove_run_config, rollback_run_config
from meta_deployer.settings import Settings
from meta_deployer.spec import CODE_SOURCE_FIELDS, RepoSpec, parse_spec
from meta_deployer.state import record_store

log = logging.getLogger("meta_deployer.api")

#: The op whose start marks each phase of an operation.
PHASES = {
    "clone": "clone", "rollback_checkout": "clone", "build": "build", "push": "push", "register": "register",
    "write_workspace": "workspace", "reload": "reload", "remove": "remove", "reload_after_remove": "reload",
}
LOG_TAIL = 20
#: A webhook is answered within this many seconds; a launch still going on then finishes in the background.
WEBHOOK_ANSWER_S = 0.5
SSE_POLL_S = 1.0
DONE = remote.DONE


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before it is read whole."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = problem_response(413, f"the request body is over {self.limit} bytes (META_DEPLOYER_API_MAX_BODY)",
                                   [("body", f"at most {self.limit} bytes")])
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await too_big(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooBig()
            return message

        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking_send)
        except _TooBig:
            if not started:
                await too_big(scope, receive, send)


class _TooBig(Exception):
    pass


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)


def _check_name(name: str) -> str:
    problem = naming.name_problem(name)
    if problem:
        raise Problem(422, f"{name!r} is not a repo name", [("name", f"repo name {problem}")])
    return name


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Problem(400, "the request body is not UTF-8", [("body", "send JSON encoded as UTF-8")]) from None
    except json.JSONDecodeError as exc:
        raise Problem(400, f"the request body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                      [("body", "must be one JSON object")]) from None


def _body_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\0" + body).hexdigest()


def _format(event: dict) -> str | None:
    return remote.format_event(event)


def _phase(events: list[dict], status: str) -> str:
    phase = "queued" if status in ("QUEUED", "NOT_STARTED") else "starting"
    for event in events:
        op = (event.get("stepKey") or "").split(".")[-1]  # deploy_steps.build -> build
        if event.get("eventType") == "STEP_START" and op in PHASES:
            phase = PHASES[op]
    if status == "SUCCESS":
        return "done"
    return phase


def _spec_view(spec: RepoSpec | None) -> dict | None:
    if spec is None:
        return None
    config = spec.to_config()
    config["git_url"] = redact(config["git_url"])
    return config


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for ``settings`` (default: the environment's)."""
    settings = settings or Settings.from_env()
    dagster_url = settings.webserver_url
    tokens = token_store(settings)
    limiter = RateLimiter(settings.api_rate_limit)
    idempotent = IdempotencyStore()
    deliveries = SeenDeliveries()
    launcher = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-launch")

    app = FastAPI(
        title="meta_deployer: Repository Manager Service",
        version=meta_deployer.__version__,
        description="Every change is a Dagster run of the meta_deployer location's jobs. See README.md, 'The REST API'.",
    )

    # -- errors as problem+json ----------------------------------------------------
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return from_problem(exc, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), [], request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [(".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), e["msg"]) for e in exc.errors()]
        return problem_response(422, "invalid request parameters", errors, request.url.path)

    @app.exception_handler(dagster.DagsterUnavailable)
    async def _dagster(request: Request, exc: dagster.DagsterUnavailable) -> JSONResponse:
        return problem_response(502, f"{exc}; nothing was launched", [], request.url.path)

    @app.exception_handler(SpecError)
    async def _spec(request: Request, exc: SpecError) -> JSONResponse:
        return _spec_problem(exc, request.url.path)

    @app.exception_handler(MetaDeployerError)
    async def _ours(request: Request, exc: MetaDeployerError) -> JSONResponse:
        return problem_response(409, str(exc), [], request.url.path)

    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)

    # -- who is calling ------------------------------------------------------------
    def authenticate(request: Request) -> Token:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        client = request.client.host if request.client else "?"
        if scheme.lower() != "bearer" or not presented.strip():
            log.warning("401 %s %s from %s: no bearer token", request.method, request.url.path, client)
            raise Problem(401, "a bearer token is required (Authorization: Bearer <token>; make api-token creates one)",
                          [("Authorization", "missing")], headers={"WWW-Authenticate": "Bearer"})
        token = tokens.check(presented.strip())
        if token is None:
            log.warning("401 %s %s from %s: unknown token", request.method, request.url.path, client)
            raise Problem(401, "the bearer token is not valid", [("Authorization", "unknown or revoked token")],
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return token

    def readable(token: Token, name: str) -> str:
        _check_name(name)
        owner = owner_of(name)
        if owner is not None:  # one location of a repository with several: not a repository itself
            if token.may_read(owner):
                raise Problem(404, f"{name} is one location of the repository {owner}: use /v1/repositories/{owner}",
                              [("name", f"a location of {owner}; name the repository {owner}")])
            raise Problem(404, f"no repository {name}", [("name", "no such repository")])
        if not token.may_read(name):
            raise Problem(404, f"no repository {name}", [("name", "no such repository")])
        return name

    def changeable(token: Token, name: str) -> str:
        readable(token, name)
        if not token.may_change(name):
            raise Problem(403, f"this token may not change {name} (scope read)", [("Authorization", "needs admin or repo:" + name)])
        return name

    async def mutation(request: Request, token: Token, handler: Callable[[bytes], JSONResponse]) -> Response:
        """Idempotency-Key and the rate limit around one mutation; ``handler`` runs in a thread."""
        body = await request.body()
        key = request.headers.get("idempotency-key")
        if key is not None and not (0 < len(key) <= 255 and key.isprintable()):
            raise Problem(422, "Idempotency-Key must be 1 to 255 printable characters", [("Idempotency-Key", "invalid")])
        fingerprint = _body_fingerprint(request.method, request.url.path, body)

        def run() -> Response:
            if key is not None:
                with idempotent.lock((token.id, key)):
                    stored = idempotent.get((token.id, key))
                    if stored is not None:
                        if stored.fingerprint != fingerprint:
                            raise Problem(422, "this Idempotency-Key was already used for another request",
                                          [("Idempotency-Key", "use a new key for a different request")])
                        return Response(stored.body, stored.status, {**stored.headers, "Idempotency-Replayed": "true"})
                    try:
                        response = limited()
                    except Problem as exc:
                        if exc.status == 429:  # a retry after the wait must still go through
                            raise
                        response = from_problem(exc, request.url.path)
                    except SpecError as exc:
                        response = _spec_problem(exc, request.url.path)
                    if response.status_code < 500:
                        idempotent.put((token.id, key), Stored(
                            fingerprint, response.status_code, bytes(response.body),
                            {k: v for k, v in response.headers.items() if k.lower() in ("location", "content-type")},
                        ))
                    return response
            return limited()

        def limited() -> JSONResponse:
            wait = limiter.retry_after(token.id)
            if wait is not None:
                raise Problem(429, f"over {settings.api_rate_limit} mutations a minute for this token "
                              "(META_DEPLOYER_API_RATE_LIMIT)", [("Authorization", "rate limited")],
                              headers={"Retry-After": str(int(wait) + 1)})
            return handler(body)

        return await run_in_threadpool(run)

    # -- reading the state -----------------------------------------------------------
    parsed: dict[str, Any] = {}  # name -> the last ScannedConfig parsed, reused while its content hash holds
    parsed_lock = threading.Lock()

    def configs() -> dict:
        """Every config as the sensor scans it; a file whose bytes did not change is not parsed again."""
        with parsed_lock:
            known = {n: item.content_hash for n, item in parsed.items() if item.content_hash}
        try:
            _, scanned = configsource.scan(settings, known=known)
        except MetaDeployerError as exc:
            log.warning("configs not read: %s", redact(str(exc)))
            return {}
        with parsed_lock:
            out = {}
            for name, item in scanned.items():
                cached = parsed.get(name)
                if item.known:
                    if cached is None or cached.content_hash != item.content_hash:
                        break  # another request changed the cache meanwhile: parse everything once more
                    item = cached
                out[name] = item
            else:
                parsed.clear()
                parsed.update(out)
                return out
        try:
            _, scanned = configsource.scan(settings)
        except MetaDeployerError as exc:
            log.warning("configs not read: %s", redact(str(exc)))
            return {}
        return scanned

    def owner_of(name: str, scanned: dict | None = None, records: dict | None = None) -> str | None:
        """The repository ``name`` is one location of (its record, or a config.yml's ``locations``), or None."""
        scanned = configs() if scanned is None else scanned
        if name in scanned:
            return None  # a repository of its own
        record = record_store(settings).get(name) if records is None else records.get(name)
        if record is not None and record.parent and record.parent != name:
            return record.parent
        for repo, item in scanned.items():
            if item.spec is not None and item.spec.locations and name in parts_of(item, {}):
                return repo
        return None

    def parts_of(scanned: Any, records: dict, name: str | None = None) -> dict[str, str | None]:
        """``{deployed name: location label}`` of a repository with several locations (config.yml order,
        then deployed ones it no longer lists, label unknown); {} for a repository with one."""
        spec = scanned.spec if scanned is not None else None
        out: dict[str, str | None] = {}
        if spec is not None and spec.locations:
            out = {part.name: loc.name for loc, part in zip(spec.locations, spec.location_specs())}
        name = name or (spec.name if spec is not None else None)
        for other, record in sorted(records.items()):
            if name and record.parent == name and other != name:
                out.setdefault(other, None)
        return out

    def status_of(name: str, scanned: Any, record: Any, live: dict | None) -> str:
        if scanned is not None and scanned.error:
            return "invalid config.yml"
        if record is None:
            return "not deployed"
        if live is None:
            return "deployed (webserver not answering)"
        status = live.get(name, {}).get("status", "not in webserver")
        return "load error" if status.startswith("ERROR") else status

    def deployed_view(name: str, record: Any, status: str, live: dict | None) -> dict:
        metadata = (record.metadata or {}) if record else {}
        return {
            "commit": record.commit if record else None,
            "artifact": record.artifact if record else None,
            "digest": record.digest if record else None,
            "dagster_version": metadata.get("dagster_version") if record else None,
            "platform": record.platform if record else settings.platform,
            "status": status,
            "endpoint": record.endpoint if record else None,
            "deployed_at": record.deployed_at if record else None,
            "assets": (live or {}).get(name, {}).get("assets", []) if record else [],
        }

    def repo_view(name: str, scanned: Any, records: dict, live: dict | None) -> dict:
        """One repository; with several locations, each in ``locations`` and the worst status of them on top."""
        spec = scanned.spec if scanned is not None else None
        record = records.get(name)
        parts = parts_of(scanned, records, name)
        head = record or next((records[p] for p in parts if p in records), None)
        view = {
            "name": name,
            "spec": _spec_view(spec),
            "config_error": redact(scanned.error) if scanned is not None and scanned.error else None,
            "git_url": redact(head.git_url if head else spec.git_url if spec else ""),
            "branch": head.branch if head else spec.branch if spec else None,
        }
        if not parts:
            view.update(deployed_view(name, record, status_of(name, scanned, record, live), live))
            view["locations"] = []
            return view
        locations = []
        for part, label in parts.items():
            part_record = records.get(part)
            status = status_of(part, scanned, part_record, live)
            if label is None and scanned is not None and not scanned.error:
                status = "no longer in config.yml"  # removed at the repository's next deploy
            locations.append({"name": part, "location": label, **deployed_view(part, part_record, status, live)})

        def same(key: str) -> Any:
            values = {loc[key] for loc in locations}
            return values.pop() if len(values) == 1 else None

        view.update({
            "commit": same("commit"), "artifact": None, "digest": None, "dagster_version": same("dagster_version"),
            "platform": same("platform") or settings.platform,
            "status": min((loc["status"] for loc in locations), key=_badness),
            "endpoint": None,
            "deployed_at": max((loc["deployed_at"] for loc in locations if loc["deployed_at"]), default=None),
            "assets": [a for loc in locations for a in loc["assets"]],
            "locations": locations,
        })
        return view

    def current(name: str) -> tuple[Any, Any]:
        """(config spec or None, record or None) of one repo; with several locations, the record of one of
        them stands for the repository's."""
        try:
            _, spec = configsource.configured_spec(settings, name)
        except SpecError:
            spec = None
        records = record_store(settings).all()
        record = records.get(name)
        if record is None:
            record = next((r for n, r in sorted(records.items()) if r.parent == name and n != name), None)
        return spec, record

    def deployed_as(spec: RepoSpec) -> bool:
        """Every location of ``spec`` (itself, or each of its ``locations``) serves exactly this config here."""
        records = record_store(settings).all()
        parent = spec.name if spec.locations else None
        return all(
            (r := records.get(part.name)) is not None and r.spec_hash == spec.content_hash()
            and r.platform == settings.platform and r.parent == parent
            for part in spec.location_specs()
        )

    def location_names(name: str) -> list[str]:
        """The deployed names whose history and logs are repository ``name``'s: its locations, or itself."""
        scanned = configs().get(name)
        return list(parts_of(scanned, record_store(settings).all(), name)) or [name]

    def operation_view(run: dict, events: list[dict] | None = None) -> dict:
        events = events if events is not None else dagster.all_events(dagster_url, run["runId"])
        lines = [line for line in (_format(e) for e in events) if line]
        failure = remote.failure_message(events) if run["status"] == "FAILURE" else None
        return {
            "id": run["runId"],
            "job": run["jobName"],
            "repository": run["tags"].get(naming.RUN_TAG_KEY),
            "status": run["status"],
            "phase": _phase(events, run["status"]),
            "created_at": run.get("creationTime"),
            "started_at": run.get("startTime"),
            "ended_at": run.get("endTime"),
            "error": failure,
            "log_tail": lines[-LOG_TAIL:],
            "dagster_url": f"{dagster_url}/runs/{run['runId']}",
        }

    def launched(job: str, config: dict, name: str, status: int, extra: dict | None = None) -> JSONResponse:
        run_id = dagster.launch(dagster_url, job, config, name)
        log.info("%s %s: launched %s run %s", status, name, job, run_id)
        body = {"operation": {"id": run_id, "job": job, "repository": name, "href": f"/v1/operations/{run_id}"},
                **(extra or {})}
        return _json(body, status, {"Location": f"/v1/operations/{run_id}"})

    def committed(name: str, spec: RepoSpec | None, status: int) -> JSONResponse:
        """GitOps: commit the change to the configuration repository; the repos_sensor deploys it."""
        from meta_deployer.api.configrepo import commit_config

        commit = commit_config(settings, name, spec, _same)
        where = configsource.describe(settings)
        if commit is None:
            return _json({"operation": None, "changed": False, "repository": name, "commit": None,
                          "detail": f"{where} already says this"}, 200)
        log.info("%s %s: committed %s to %s", status, name, commit[:12], where)
        return _json({"operation": None, "changed": True, "repository": name, "commit": commit,
                      "detail": f"committed {commit[:12]} to {where}; the repos_sensor deploys it at its next tick"}, status)

    # -- routes ------------------------------------------------------------------------
    @app.get("/healthz", tags=["service"], summary="Liveness: the service answers; says whether Dagster does")
    def healthz() -> dict:
        live = dagster.statuses(dagster_url)
        return {"status": "ok", "version": meta_deployer.__version__, "dagster": "ok" if live is not None else "unreachable"}

    @app.get("/v1/repositories", tags=["repositories"], summary="Every repo the token may read (a repo with several locations once, with its locations)")
    def list_repositories(request: Request) -> dict:
        token = authenticate(request)
        scanned = configs()
        records = record_store(settings).all()
        live = dagster.statuses(dagster_url)
        repos = {n for n in set(scanned) | {r.repo for r in records.values()} if owner_of(n, scanned, records) is None}
        names = sorted(n for n in repos if not naming.name_problem(n) and token.may_read(n))
        return {"repositories": [repo_view(n, scanned.get(n), records, live) for n in names]}

    @app.get("/v1/repositories/{name}", tags=["repositories"], summary="One repo (with its locations) and its last operations")
    def get_repository(name: str, request: Request) -> dict:
        token = authenticate(request)
        readable(token, name)
        scanned = configs().get(name)
        records = record_store(settings).all()
        if scanned is None and name not in records and not parts_of(None, records, name):
            raise Problem(404, f"no repository {name}", [("name", "no such repository")])
        view = repo_view(name, scanned, records, dagster.statuses(dagster_url))
        try:
            runs = dagster.repo_runs(dagster_url, name, limit=10)
        except dagster.DagsterUnavailable:
            runs = []
        view["operations"] = [
            {"id": r["runId"], "job": r["jobName"], "status": r["status"], "created_at": r.get("creationTime"),
             "href": f"/v1/operations/{r['runId']}"} for r in runs
        ]
        return view

    @app.put(
        "/v1/repositories/{name}",
        tags=["repositories"],
        summary="Create or update a repo's desired state (the config.yml schema); launches add_repo or update_repo",
        status_code=200,
        responses={201: {"description": "a new repo: add_repo launched"},
                   200: {"description": "changed (update_repo launched) or unchanged (nothing launched)"}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _inline(RepoSpec)}}}},
    )
    async def put_repository(name: str, request: Request) -> Response:
        token = authenticate(request)
        changeable(token, name)

        def handle(body: bytes) -> JSONResponse:
            data = _parse_json(body)
            if not isinstance(data, dict):
                raise Problem(422, "the body must be a JSON object: the config.yml keys", [("body", "must be an object")])
            data.setdefault("name", name)
            spec = parse_spec(data, "request body", expected_name=name) if data.get("name") == name else None
            if spec is None:
                raise Problem(422, f"the body names {data.get('name')!r} but the URL names {name!r}",
                              [("name", f"must be {name!r} (the repo in the URL) or left out")])
            config_spec, record = current(name)
            if settings.config_git_url:
                return committed(name, spec, 201 if config_spec is None else 200)
            if config_spec is not None and _same(config_spec, spec) and deployed_as(config_spec):
                return _json({"operation": None, "changed": False, "repository": name})
            if config_spec is None and record is None:
                return launched("add_repo", deploy_run_config(spec), name, 201, {"changed": True})
            return launched("update_repo", deploy_run_config(spec), name, 200, {"changed": True})

        return await mutation(request, token, handle)

    @app.delete("/v1/repositories/{name}", tags=["repositories"], status_code=202,
                summary="Remove a repo's location (data kept unless purge=true); launches remove_repo")
    async def delete_repository(name: str, request: Request, purge: bool = Query(False)) -> Response:
        token = authenticate(request)
        changeable(token, name)

        def handle(body: bytes) -> JSONResponse:
            config_spec, record = current(name)
            if config_spec is None and record is None:
                raise Problem(404, f"no repository {name}", [("name", "no such repository")])
            if settings.config_git_url:
                if purge:
                    raise Problem(422, "purge is not available with a configuration repository (the repos_sensor "
                                  "removes without purging)", [("purge", "leave it out")])
                return committed(name, None, 202)
            return launched("remove_repo", remove_run_config(name, purge=purge), name, 202)

        return await mutation(request, token, handle)

    @app.post("/v1/repositories/{name}/deployments", tags=["deployments"], status_code=202,
              summary="Redeploy the branch head (what update-repo does); launches update_repo")
    async def redeploy(name: str, request: Request) -> Response:
        token = authenticate(request)
        changeable(token, name)

        def handle(body: bytes) -> JSONResponse:
            config_spec, _ = current(name)
            if config_spec is None:
                raise Problem(404, f"no repository {name} (no config.yml)", [("name", "no such repository")])
            return launched("update_repo", deploy_run_config(config_spec), name, 202)

        return await mutation(request, token, handle)

    @app.get("/v1/repositories/{name}/deployments", tags=["deployments"],
             summary="The deploy history: each deploy run with its outcome, and what it served in which location")
    def list_deployments(name: str, request: Request, limit: int = Query(50, ge=1, le=500)) -> dict:
        token = authenticate(request)
        readable(token, name)
        served: dict[str, list[tuple[str, history.DeploymentEntry]]] = {}  # run id -> what it served, per location
        for part in location_names(name):
            for entry in dagster.deployments(dagster_url, part, limit=limit):
                served.setdefault(entry.id, []).append((part, entry))
        out = []
        for run in dagster.repo_runs(dagster_url, name, limit=limit, jobs=dagster.DEPLOY_JOBS):
            entries = served.pop(run["runId"], [])
            outcome = run["status"] if run["status"] != "SUCCESS" else ("deployed" if entries else "unchanged")
            for part, entry in entries or [(None, None)]:
                out.append({
                    "id": run["runId"], "job": run["jobName"], "outcome": outcome, "location": part,
                    "created_at": run.get("creationTime"), "ended_at": run.get("endTime"),
                    **({k: v for k, v in entry.to_json().items() if k != "id"} if entry else {}),
                    "rollback_ok": entry is not None,
                })
        rest = [(part, entry) for entries in served.values() for part, entry in entries]
        for part, entry in sorted(rest, key=lambda pe: (-pe[1].timestamp, pe[0])):  # runs not listed above
            out.append({"id": entry.id, "job": None, "outcome": "deployed", "location": part, **entry.to_json(),
                        "rollback_ok": True})
        return {"repository": name, "deployments": out}

    @app.post(
        "/v1/repositories/{name}/rollback", tags=["deployments"], status_code=202,
        summary="Serve an earlier successful deployment again (no rebuild while its artifact is kept); launches rollback_repo",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["deployment"], "additionalProperties": False,
            "properties": {"deployment": {"type": "string", "description": "a deployment id or its commit (7+ hex digits)"}},
        }}}}},
    )
    async def rollback(name: str, request: Request) -> Response:
        token = authenticate(request)
        changeable(token, name)

        def handle(body: bytes) -> JSONResponse:
            data = _parse_json(body)
            if not isinstance(data, dict) or set(data) - {"deployment"}:
                extra = sorted(set(data) - {"deployment"}) if isinstance(data, dict) else []
                raise Problem(422, "the body is {\"deployment\": \"<deployment id or commit>\"}",
                              [(k, "unknown key") for k in extra] or [("body", "must be an object")])
            to = data.get("deployment")
            problem = deployment_ref_problem(to) if isinstance(to, str) else "is required (a string)"
            if problem:
                raise Problem(422, f"deployment: {problem}", [("deployment", problem)])
            entries = [e for part in location_names(name) for e in dagster.deployments(dagster_url, part)]
            target = history.find(entries, to)
            if target is None:
                raise Problem(422, f"{to!r} is no earlier successful deployment of {name}",
                              [("deployment", f"use an id or commit from GET /v1/repositories/{name}/deployments")])
            return launched("rollback_repo", rollback_run_config(name, target.id), name, 202,
                            {"deployment": target.to_json()})

        return await mutation(request, token, handle)

    @app.get("/v1/repositories/{name}/logs", tags=["repositories"], summary="The code server's output (repo-logs): each location's in turn")
    def repo_logs(name: str, request: Request, tail: int = Query(200, ge=1, le=10_000)) -> dict:
        token = authenticate(request)
        readable(token, name)
        records = record_store(settings).all()
        parts = [p for p in location_names(name) if p in records]
        if not parts:
            raise Problem(404, f"{name} is not deployed", [("name", "not deployed")])
        from meta_deployer.platforms import get_platform  # reads the platform's log store only

        platform = get_platform(settings)
        if parts == [name]:
            return {"repository": name, "lines": [redact(line) for line in platform.logs(name, follow=False, tail=tail)]}
        lines = []
        for part in parts:  # a repository with several locations: each one's output in turn, as repo-logs shows it
            lines.append(f"==> {part} <==")
            lines += [redact(line) for line in platform.logs(part, follow=False, tail=tail)]
        return {"repository": name, "lines": lines}

    def visible_run(token: Token, run_id: str) -> dict:
        if not run_id.replace("-", "").isalnum() or len(run_id) > 64:
            raise Problem(422, "not an operation id", [("id", "a run id such as 0f8e2c1a-3b4d-...")])
        run = dagster.run(dagster_url, run_id)
        repo = (run or {}).get("tags", {}).get(naming.RUN_TAG_KEY, "")
        if run is None or run["jobName"] not in dagster.OPERATION_JOBS or naming.name_problem(repo) \
                or not token.may_read(repo):
            raise Problem(404, f"no operation {run_id}", [("id", "no such operation")])
        return run

    @app.get("/v1/operations/{op_id}", tags=["operations"], summary="An operation (a run): phase, status, last log lines")
    def get_operation(op_id: str, request: Request) -> dict:
        token = authenticate(request)
        return operation_view(visible_run(token, op_id))

    @app.get("/v1/operations/{op_id}/events", tags=["operations"],
             summary="The operation's events as server-sent events, until the run ends",
             response_class=StreamingResponse)
    async def operation_events(op_id: str, request: Request) -> StreamingResponse:
        token = authenticate(request)
        run = await run_in_threadpool(visible_run, token, op_id)

        async def stream():
            cursor, status = None, run["status"]
            yield f"event: status\ndata: {json.dumps({'status': status})}\n\n"
            while True:
                status_now = (await run_in_threadpool(dagster.run, dagster_url, op_id) or {}).get("status", status)
                while True:
                    batch, cursor, more = await run_in_threadpool(dagster.events, dagster_url, op_id, cursor)
                    for event in batch:
                        line = _format(event)
                        if line:
                            data = {"step": event.get("stepKey"), "type": event.get("eventType") or event.get("level"),
                                    "message": line, "timestamp": event.get("timestamp")}
                            yield f"event: log\ndata: {json.dumps(data)}\n\n"
                    if not more:
                        break
                if status_now != status:
                    status = status_now
                    yield f"event: status\ndata: {json.dumps({'status': status})}\n\n"
                if status in DONE or await request.is_disconnected():
                    yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
                    return
                await asyncio.sleep(SSE_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # -- webhooks ------------------------------------------------------------------------
    def webhook_secret() -> bytes:
        path = settings.webhook_secret_file
        try:
            secret = path.read_bytes().strip() if path else b""
        except OSError:
            secret = b""
        if not secret:
            raise Problem(401, "webhooks are off: META_DEPLOYER_WEBHOOK_SECRET_FILE names no readable secret",
                          [("META_DEPLOYER_WEBHOOK_SECRET_FILE", "unset or unreadable")])
        return secret

    def refused(request: Request, what: str) -> Problem:
        client = request.client.host if request.client else "?"
        log.warning("401 %s from %s: %s", request.url.path, client, what)
        return Problem(401, f"the webhook is not authentic: {what}", [(what.split(" ")[0], "does not match")])

    def push(request: Request, delivery: str, payload: Any, urls: list[str], ref: str, source: str,
             received: float) -> JSONResponse:
        if not deliveries.first_time(f"{source}:{delivery}"):
            raise Problem(409, f"delivery {delivery} was already received; nothing launched",
                          [("delivery", "already received")])
        try:
            branch = ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else None
            if branch is None:
                return _json({"launched": [], "detail": f"{ref!r} is not a branch; ignored"}, 202)
            wanted = {_normal(u) for u in urls if isinstance(u, str) and u}
            matched = [
                item.spec for name, item in sorted(configs().items())
                if item.spec is not None and item.spec.branch == branch and _normal(item.spec.git_url) in wanted
            ]
        except BaseException:
            deliveries.forget(f"{source}:{delivery}")
            raise

        def launch(spec: RepoSpec) -> dict:  # the deployer reads the branch head itself: no commit from the payload
            try:
                run_id = dagster.launch(dagster_url, "update_repo", deploy_run_config(spec), spec.name,
                                        {"meta_deployer/webhook": source, "meta_deployer/delivery": delivery})
            except Exception as exc:
                deliveries.forget(f"{source}:{delivery}")  # a redelivery may try again
                log.error("%s push to %s: update_repo of %s not launched: %s", source, branch, spec.name, redact(str(exc)))
                raise
            log.info("%s push to %s: launched update_repo %s for %s", source, branch, run_id, spec.name)
            return {"repository": spec.name, "id": run_id, "href": f"/v1/operations/{run_id}"}

        # Answer within WEBHOOK_ANSWER_S: launches still going on then finish in the background, and their
        # operations show in GET /v1/repositories/{name} (tagged with the delivery).
        futures = {launcher.submit(launch, spec): spec.name for spec in matched}
        done, _ = wait(futures, timeout=max(0.0, WEBHOOK_ANSWER_S - (time.monotonic() - received)))
        ops, pending, failed = [], [], []
        for future, name in futures.items():
            if future not in done:
                pending.append({"repository": name, "href": f"/v1/repositories/{name}"})
            elif future.exception() is not None:
                failed.append(name)
            else:
                ops.append(future.result())
        if failed and not ops and not pending:
            raise dagster.DagsterUnavailable(f"the Dagster webserver at {dagster_url} refused update_repo of {', '.join(failed)}")
        detail = f"{len(matched)} repo(s) follow {branch}" if matched else f"no repo deploys branch {branch} of that repository"
        return _json({"launched": ops, "launching": pending, "failed": failed, "detail": detail}, 202)

    @app.post("/v1/webhooks/github", tags=["webhooks"], status_code=202,
              summary="GitHub push webhook (X-Hub-Signature-256); launches update_repo for matching repos")
    async def github(request: Request) -> Response:
        received = time.monotonic()
        body = await request.body()
        secret = webhook_secret()
        signature = request.headers.get("x-hub-signature-256", "")
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise refused(request, "X-Hub-Signature-256 " + ("missing" if not signature else "wrong"))
        event = request.headers.get("x-github-event", "")
        delivery = request.headers.get("x-github-delivery", "")
        if event == "ping":
            return _json({"launched": [], "detail": "pong"}, 200)
        if event != "push":
            return _json({"launched": [], "detail": f"event {event!r} ignored (push only)"}, 202)
        if not delivery or len(delivery) > 100:
            raise Problem(422, "X-GitHub-Delivery is required", [("X-GitHub-Delivery", "missing")])
        payload = _parse_json(body)
        if not isinstance(payload, dict):
            raise Problem(422, "the payload must be a JSON object", [("body", "must be an object")])
        repo = payload.get("repository") if isinstance(payload.get("repository"), dict) else {}
        urls = [repo.get(k) for k in ("clone_url", "ssh_url", "git_url", "html_url", "url")]
        ref = str(payload.get("ref", ""))
        return await run_in_threadpool(push, request, delivery, payload, urls, ref, "github", received)

    @app.post("/v1/webhooks/gitlab", tags=["webhooks"], status_code=202,
              summary="GitLab push webhook (X-Gitlab-Token); launches update_repo for matching repos")
    async def gitlab(request: Request) -> Response:
        received = time.monotonic()
        body = await request.body()
        secret = webhook_secret()
        presented = request.headers.get("x-gitlab-token", "").encode()
        if not hmac.compare_digest(presented, secret):
            raise refused(request, "X-Gitlab-Token " + ("missing" if not presented else "wrong"))
        event = request.headers.get("x-gitlab-event", "")
        if event != "Push Hook":
            return _json({"launched": [], "detail": f"event {event!r} ignored (Push Hook only)"}, 202)
        delivery = request.headers.get("x-gitlab-event-uuid") or request.headers.get("idempotency-key") or ""
        if not delivery or len(delivery) > 100:
            raise Problem(422, "X-Gitlab-Event-UUID is required", [("X-Gitlab-Event-UUID", "missing")])
        payload = _parse_json(body)
        if not isinstance(payload, dict):
            raise Problem(422, "the payload must be a JSON object", [("body", "must be an object")])
        project = payload.get("project") if isinstance(payload.get("project"), dict) else {}
        repo = payload.get("repository") if isinstance(payload.get("repository"), dict) else {}
        urls = [project.get("git_http_url"), project.get("git_ssh_url"), project.get("web_url"),
                repo.get("git_http_url"), repo.get("git_ssh_url"), repo.get("homepage")]
        ref = str(payload.get("ref", ""))
        return await run_in_threadpool(push, request, delivery, payload, urls, ref, "gitlab", received)

    return app


#: The statuses of a repository's locations, worst first; its overall status is the worst of them.
WORST_FIRST = ("invalid config.yml", "load error", "not in webserver", "not deployed", "no longer in config.yml",
               "deployed (webserver not answering)")
BEST_LAST = ("LOADING", "LOADED")


def _badness(status: str) -> int:
    """Sort key: lower is worse (an unknown status sits between the known bad and the good ones)."""
    if status in WORST_FIRST:
        return WORST_FIRST.index(status)
    if status in BEST_LAST:
        return len(WORST_FIRST) + 1 + BEST_LAST.index(status)
    return len(WORST_FIRST)


def _inline(model: type) -> dict:
    """A model's JSON schema with its definitions inlined (the OpenAPI requestBody of PUT)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.split("/")[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def _spec_problem(exc: SpecError, path: str) -> JSONResponse:
    detail = "invalid repo spec: " + "; ".join(f"{f}: {m}" if f else m for f, m in exc.problems)
    return problem_response(422, detail, [(f or _field_of(m), m) for f, m in exc.problems], path)


def _field_of(message: str) -> str:
    """The config.yml key a cross-field message starts with (``s3_prefix must be ...``), else ``body``."""
    return next((k for k in RepoSpec.model_fields if message.startswith((f"{k} ", f"{k}:"))), "body")


def _same(current: RepoSpec, wanted: RepoSpec) -> bool:
    """True when ``wanted`` asks for what ``current`` says; a code source left out of ``wanted`` is the
    one the deploy detected and wrote into config.yml."""
    if current == wanted:
        return True
    if wanted.code_source is None and current.code_source is not None:
        data = wanted.to_config()
        data.update({k: v for k, v in current.to_config().items() if k in CODE_SOURCE_FIELDS})
        if current.working_directory and not wanted.working_directory:
            data["working_directory"] = current.working_directory
        try:
            return parse_spec(data, "compare") == current
        except SpecError:
            return False
    return False


def _normal(url: str) -> str:
    """A git URL reduced for comparison: no credentials, scheme, ``.git`` or trailing slash; host lower-case."""
    import re

    text = url.strip()
    text = re.sub(r"^[a-z+]+://", "", text)
    text = re.sub(r"^[^@/]+@", "", text)  # credentials or the ssh user
    text = text.replace(":", "/", 1) if re.match(r"^[A-Za-z0-9.-]+:[^/]", text) else text  # scp-like host:path
    text = text.rstrip("/")
    text = text[:-4] if text.endswith(".git") else text
    host, _, path = text.partition("/")
    return f"{host.lower()}/{path}"
