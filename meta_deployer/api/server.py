"""``make api`` / ``make api-token``: serve the API with uvicorn; create a token; print the OpenAPI document."""

from __future__ import annotations

import json
import logging
import sys

from meta_deployer.settings import Settings


def serve(host: str, port: int) -> int:
    import uvicorn

    from meta_deployer.api.app import create_app

    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"meta_deployer API on http://{host}:{port} (Dagster at {settings.webserver_url}; "
          f"tokens in {settings.api_tokens_secret_arn or settings.api_tokens_file})", flush=True)
    # access_log off: a request line may carry a query string, never a header; our own log names each 401.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=False)
    return 0


def create_token(scopes_text: str) -> int:
    from meta_deployer.api.auth import parse_scopes, token_store

    settings = Settings.from_env()
    scopes = parse_scopes(scopes_text)
    token = token_store(settings).create(scopes)
    where = settings.api_tokens_secret_arn or settings.api_tokens_file
    print(f"created a token with scopes {','.join(scopes)}; its hash is in {where}. "
          "It is shown once, here:")
    print(token)
    return 0


def openapi_document() -> str:
    """The OpenAPI document the service serves (docs/openapi.json is this, committed)."""
    from meta_deployer.api.app import create_app

    settings = Settings.from_env({"META_DEPLOYER_ROOT": "/nonexistent"})
    return json.dumps(create_app(settings).openapi(), indent=2, sort_keys=True) + "\n"


def print_openapi() -> int:
    sys.stdout.write(openapi_document())
    return 0
