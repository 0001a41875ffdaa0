"""Credentials: where a caller's key is found, what upstream key it stands for, and gateway tokens.

Two modes (config `auth.mode`): `forward` sends the caller's credential to Gradium as `x-api-key`
(the client put its Gradium key where the legacy key went); `managed` accepts only configured
gateway keys (stored as SHA-256) and uses the tenant's Gradium key. Gateway-minted tokens
(ElevenLabs single-use tokens, Deepgram grants, Cartesia access tokens) resolve to the upstream key of
whoever minted them, so no upstream key ever reaches a browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

from gateway.config import AuthSettings
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData
from gateway.mapping.schema import CredentialSource

TOKEN_PREFIX = "gwt_"
# Gateway tokens may also be JWT-shaped (Deepgram grants): HS256 with a per-process secret, and a
# `kid` in the header so the first segment alone tells them apart from any other JWT.
JWT_PREFIX = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImdyYWRpdW0tZ2F0ZXdheSJ9."
_JWT_SECRET = secrets.token_bytes(32)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def is_gateway_token(value: str) -> bool:
    return value.startswith((TOKEN_PREFIX, JWT_PREFIX))


def _jwt(ttl_s: float, scope: str) -> str:
    now = int(time.time())
    claims = {"iss": "gradium-gateway", "jti": secrets.token_urlsafe(12), "iat": now, "nbf": now,
              "exp": now + max(1, round(ttl_s)), "scope": scope}
    signing = JWT_PREFIX + _b64url(orjson.dumps(claims))
    return signing + "." + _b64url(hmac.new(_JWT_SECRET, signing.encode(), hashlib.sha256).digest())


@dataclass(slots=True)
class Credential:
    value: str
    scheme: str | None = None
    source: str = ""
    token_only: bool = False
    subprotocol: str | None = None  # the subprotocol to echo when it came from Sec-WebSocket-Protocol


def _subprotocol_credential(header: str, schemes: list[str]) -> tuple[str, str] | None:
    parts = [p.strip() for p in header.split(",") if p.strip()]
    if len(parts) >= 2 and parts[0].lower() in schemes:
        return parts[0], parts[1]
    return None


def find_credential(sources: list[CredentialSource], req: RequestData) -> Credential | None:
    """The first credential present, in the order the mapping lists its sources."""
    for src in sources:
        if src.subprotocol:
            header = req.header.get("Sec-WebSocket-Protocol")
            if header:
                found = _subprotocol_credential(header, [s.lower() for s in src.schemes])
                if found:
                    return Credential(found[1], found[0].lower(), "subprotocol", src.token_only, found[0])
            continue
        raw = req.get(src.source)
        if not isinstance(raw, str) or not raw.strip():
            continue
        value = raw.strip()
        scheme = None
        if src.schemes:
            head, _, rest = value.partition(" ")
            if head.lower() in src.schemes and rest.strip():
                scheme, value = head.lower(), rest.strip()
            else:
                continue  # e.g. `Authorization: Basic ...` on a Token/Bearer source
        return Credential(value, scheme, src.source, src.token_only)
    return None


@dataclass(slots=True)
class MintedToken:
    upstream_key: str
    expires_at: float
    scope: str
    single_use: bool


class TokenStore:
    """In-memory gateway tokens. Single-use tokens are consumed on first use."""

    def __init__(self) -> None:
        self._tokens: dict[str, MintedToken] = {}

    def mint(self, upstream_key: str, ttl_s: float, scope: str, single_use: bool,
             shape: str = "opaque") -> tuple[str, float]:
        """A new token; `shape: jwt` makes it a signed JWT (`exp` = its expiry) instead of `gwt_...`."""
        self._sweep()
        token = _jwt(ttl_s, scope) if shape == "jwt" else TOKEN_PREFIX + secrets.token_urlsafe(24)
        expires = time.time() + ttl_s
        self._tokens[token] = MintedToken(upstream_key, expires, scope, single_use)
        return token, expires

    def redeem(self, token: str, scope: str | None = None) -> str | None:
        entry = self._tokens.get(token)
        if entry is None or entry.expires_at < time.time():
            self._tokens.pop(token, None)
            return None
        if scope is not None and entry.scope != "*" and scope not in entry.scope.split(","):
            return None  # minted for other routes (`scope` is one route name or a comma-separated list)
        if entry.single_use:
            del self._tokens[token]
        return entry.upstream_key

    def _sweep(self) -> None:
        now = time.time()
        for k in [k for k, v in self._tokens.items() if v.expires_at < now]:
            del self._tokens[k]


class Authenticator:
    def __init__(self, settings: AuthSettings, default_upstream_key: str | None, tokens: TokenStore) -> None:
        self.settings = settings
        self.default_key = default_upstream_key
        self.tokens = tokens

    def upstream_key(self, cred: Credential | None, scope: str | None = None) -> str:
        """The Gradium key to use for this caller, or an `unauthorized` error."""
        if cred is None:
            raise GatewayError("unauthorized", "Missing API key")
        if is_gateway_token(cred.value) or cred.token_only:
            key = self.tokens.redeem(cred.value, scope)
            if key is None:
                raise GatewayError("unauthorized", "Invalid or expired token")
            return key
        if self.settings.mode == "forward":
            return cred.value
        tenant = self.settings.tenant_for(cred.value)
        if tenant is None:
            raise GatewayError("unauthorized", "Invalid API key")
        t = self.settings.tenants[tenant]
        key = t.gradium_api_key.get_secret_value() if t.gradium_api_key else self.default_key
        if not key:
            raise GatewayError("unauthorized", "No Gradium key configured for this tenant")
        return key
