"""Who may call the API: bearer tokens stored as hashes, their scopes, per-token rate limits, idempotency.

The tokens file (``META_DEPLOYER_API_TOKENS_FILE``) is JSON: ``{"tokens": [{"id", "sha256", "scopes",
"created"}]}``. A token is ``mdt_<id>_<secret>``; only the SHA-256 of the whole token is kept, and a
presented token is compared with it in constant time (``hmac.compare_digest``). ``make api-token``
(:func:`create_token`) adds one and prints it once.

Scopes: ``admin`` (everything), ``read`` (GET only, every repo), ``repo:<name>`` (read and change that
repo only). A repo outside a token's scopes is answered as if it did not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from meta_deployer import naming
from meta_deployer.errors import SettingsError

TOKEN_PREFIX = "mdt_"


@dataclass(frozen=True)
class Token:
    """A token that matched: its id (never the secret) and what it may do."""

    id: str
    scopes: frozenset[str]

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def may_read(self, repo: str) -> bool:
        return self.admin or "read" in self.scopes or f"repo:{repo}" in self.scopes

    def may_change(self, repo: str) -> bool:
        return self.admin or f"repo:{repo}" in self.scopes

    @property
    def may_change_any(self) -> bool:
        return self.admin or any(s.startswith("repo:") for s in self.scopes)


def scope_problem(scope: str) -> str | None:
    """What is wrong with one scope (None when valid)."""
    if scope in ("admin", "read"):
        return None
    if scope.startswith("repo:"):
        problem = naming.name_problem(scope[5:])
        return f"{scope!r}: repo name {problem}" if problem else None
    return f"{scope!r} is not a scope; use admin, read or repo:<name>"


def parse_scopes(text: str) -> list[str]:
    """``admin`` / ``read`` / ``repo:<name>``, comma-separated; SettingsError naming SCOPES when invalid."""
    scopes = [s.strip() for s in (text or "").split(",") if s.strip()]
    if not scopes:
        raise SettingsError("SCOPES is required: SCOPES=admin, SCOPES=read or SCOPES=repo:<name>[,repo:<other>]")
    problems = [p for p in map(scope_problem, scopes) if p]
    if problems:
        raise SettingsError("SCOPES: " + "; ".join(problems))
    return sorted(set(scopes))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The tokens file: read once per change (by mtime), written atomically under a lock."""

    def __init__(self, path: Path):
        self.path = path
        self._cache: tuple[float, list[dict]] | None = None

    def _entries(self) -> list[dict]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return []
        if self._cache is None or self._cache[0] != mtime:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                entries = [e for e in data.get("tokens", []) if isinstance(e, dict)]
            except (OSError, ValueError, AttributeError) as exc:
                raise SettingsError(f"META_DEPLOYER_API_TOKENS_FILE={self.path}: not a tokens file ({exc.__class__.__name__})") from None
            self._cache = (mtime, entries)
        return self._cache[1]

    def create(self, scopes: list[str]) -> str:
        """Store a new token's hash and scopes; return the token (shown once, never stored)."""
        token_id = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=30):
            entries = [] if not self.path.exists() else list(self._entries())
            entries.append({"id": token_id, "sha256": _digest(token), "scopes": scopes, "created": int(time.time())})
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump({"tokens": entries}, fh, indent=2)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        self._cache = None
        return token

    def check(self, presented: str) -> Token | None:
        """The token ``presented`` is, or None. Every stored hash is compared, in constant time."""
        digest = _digest(presented)
        found = None
        for entry in self._entries():
            if hmac.compare_digest(str(entry.get("sha256", "")), digest):
                found = Token(str(entry.get("id", "")), frozenset(entry.get("scopes", [])))
        return found


class SecretTokenStore(TokenStore):
    """The token hashes in a Secrets Manager secret (``META_DEPLOYER_API_TOKENS_SECRET_ARN``), the same
    JSON as the tokens file: read at most every ``ttl`` seconds, so a new or revoked token takes effect
    within it; :meth:`create` writes a new version (PutSecretValue). boto3 is loaded only here."""

    def __init__(self, arn: str, ttl: float = 30.0, client=None):
        self.arn = arn
        self.ttl = ttl
        self._client = client
        self._cache: tuple[float, list[dict]] | None = None

    def client(self):
        if self._client is None:
            import boto3  # only with a secret: the API otherwise loads no AWS SDK

            self._client = boto3.client("secretsmanager")
        return self._client

    def _read(self) -> list[dict]:
        from botocore.exceptions import ClientError

        try:
            text = self.client().get_secret_value(SecretId=self.arn).get("SecretString") or "{}"
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise SettingsError(f"META_DEPLOYER_API_TOKENS_SECRET_ARN={self.arn}: no such secret") from None
            raise SettingsError(
                f"META_DEPLOYER_API_TOKENS_SECRET_ARN={self.arn}: cannot be read ({exc.response.get('Error', {}).get('Code')})"
            ) from None
        try:
            data = json.loads(text)
            return [e for e in data.get("tokens", []) if isinstance(e, dict)]
        except (ValueError, AttributeError) as exc:
            raise SettingsError(f"META_DEPLOYER_API_TOKENS_SECRET_ARN={self.arn}: not a tokens document ({exc.__class__.__name__})") from None

    def _entries(self) -> list[dict]:
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] > self.ttl:
            self._cache = (now, self._read())
        return self._cache[1]

    def create(self, scopes: list[str]) -> str:
        token_id = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        entries = self._read()
        entries.append({"id": token_id, "sha256": _digest(token), "scopes": scopes, "created": int(time.time())})
        self.client().put_secret_value(SecretId=self.arn, SecretString=json.dumps({"tokens": entries}))
        self._cache = None
        return token


def token_store(settings) -> TokenStore:
    """The configured token store: the Secrets Manager secret when one is set, else the tokens file."""
    if settings.api_tokens_secret_arn:
        return SecretTokenStore(settings.api_tokens_secret_arn)
    return TokenStore(settings.api_tokens_file)


class RateLimiter:
    """At most ``limit`` mutations per token in any ``window`` seconds (a sliding window in memory)."""

    def __init__(self, limit: int, window: float = 60.0):
        self.limit, self.window = limit, window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str, now: float | None = None) -> float | None:
        """Count one mutation of ``key``; None when allowed, else the seconds until one is."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(0.0, hits[0] + self.window - now)
            hits.append(now)
            return None


@dataclass(frozen=True)
class Stored:
    """A first answer kept for its Idempotency-Key."""

    fingerprint: str
    status: int
    body: bytes
    headers: dict[str, str]


class IdempotencyStore:
    """First answers by (token, Idempotency-Key), for a day, at most ``size`` of them (in memory)."""

    def __init__(self, size: int = 10_000, ttl: float = 86_400.0):
        self.size, self.ttl = size, ttl
        self._items: OrderedDict[tuple[str, str], tuple[float, Stored]] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    def lock(self, key: tuple[str, str]) -> threading.Lock:
        """One request per key at a time: a retry sent while the first is still answered waits for it."""
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def get(self, key: tuple[str, str]) -> Stored | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] < time.monotonic() - self.ttl:
                return None
            return item[1]

    def put(self, key: tuple[str, str], stored: Stored) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), stored)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                old, _ = self._items.popitem(last=False)
                self._key_locks.pop(old, None)


class SeenDeliveries:
    """Webhook delivery ids already received (the newest ``size``), to drop a replayed delivery."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, delivery: str) -> bool:
        with self._lock:
            if delivery in self._seen:
                return False
            self._seen[delivery] = time.time()
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True

    def forget(self, delivery: str) -> None:
        """A delivery whose launch failed may be sent again."""
        with self._lock:
            self._seen.pop(delivery, None)
