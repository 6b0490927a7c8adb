"""Errors as RFC 9457 problem details (``application/problem+json``), each naming the field at fault."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi.responses import JSONResponse

from meta_deployer.gitops import redact

PROBLEM_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    409: "Conflict", 413: "Request body too large", 415: "Unsupported media type", 422: "Invalid input",
    429: "Too many requests", 502: "Dagster unavailable", 503: "Service unavailable",
}


class Problem(Exception):
    """Raised by a handler; answered as a problem+json document."""

    def __init__(self, status: int, detail: str, errors: Sequence[tuple[str, str]] = (),
                 headers: Mapping[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, list(errors), dict(headers or {})


def problem_response(status: int, detail: str, errors: Sequence[tuple[str, str]] = (), instance: str | None = None,
                     headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The problem document: ``type``, ``title``, ``status``, ``detail`` and ``errors`` ([{field, message}])."""
    body = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": redact(detail),
        "errors": [{"field": f or "body", "message": redact(m)} for f, m in errors],
    }
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=dict(headers or {}))


def from_problem(exc: Problem, instance: str | None = None) -> JSONResponse:
    return problem_response(exc.status, exc.detail, exc.errors, instance, exc.headers)
