"""Who may call the emulator: `x-api-key` header, or a single-use `?token=` on WebSockets."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta

from aiohttp import web

from gateway.emulator.settings import EmulatorSettings


def key_id(key: str) -> str:
    """A stable fingerprint for stats: tests can tell keys apart without the key being exposed."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Auth:
    def __init__(self, settings: EmulatorSettings) -> None:
        self._settings = settings
        self._tokens: dict[str, tuple[float, str]] = {}  # token -> (monotonic expiry, minting key)

    def key_valid(self, key: str | None) -> bool:
        if not key:
            return False
        if self._settings.api_keys is not None:
            return key in self._settings.api_keys
        return not key.startswith(self._settings.revoked_prefix)

    def mint(self, key: str) -> tuple[str, str]:
        """A browser token and its ISO-8601 expiry (`GET /api/api-keys/token`)."""
        now = time.monotonic()
        for token in [t for t, (exp, _) in self._tokens.items() if exp <= now]:
            del self._tokens[token]
        token = "gtk_" + secrets.token_urlsafe(24)
        ttl = self._settings.token_ttl_s
        self._tokens[token] = (now + ttl, key)
        expires = datetime.now(UTC) + timedelta(seconds=ttl)
        return token, expires.strftime("%Y-%m-%dT%H:%M:%SZ")

    def consume(self, token: str) -> str | None:
        """The key behind a token, if it is live; a token is spent by its first use (DOCS)."""
        entry = self._tokens.pop(token, None)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1] if self.key_valid(entry[1]) else None

    def authenticate(self, request: web.Request, *, allow_token: bool) -> str | None:
        """The caller's API key when the request is authorized, else None."""
        key = request.headers.get("x-api-key")
        if key:
            return key if self.key_valid(key) else None
        token = request.query.get("token") if allow_token else None
        if token:
            return self.consume(token)
        return None
