"""Credentials: where a caller's key is found, what upstream key it stands for, and gateway tokens.

Two modes (config `auth.mode`): `forward` sends the caller's credential to Gradium as `x-api-key`
(the client put its Gradium key where the legacy key went); `managed` accepts only configured
gateway keys (stored as SHA-256) and uses the tenant's Gradium key. Gateway-minted tokens
(ElevenLabs single-use tokens, Deepgram grants, Cartesia access tokens) are signed JWTs
(`gateway.tokens`) scoped to `provider:route`; an API key mints them, a token never does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from gateway.config import AuthSettings
from gateway.custom_ids import CALLER, Caller
from gateway.errors import GatewayError
from gateway.mapping.params import RequestData
from gateway.mapping.schema import CredentialSource
from gateway.tokens import MemoryUsedTokens, TokenClaims, TokenIssuer, UsedTokenStore, is_gateway_token

__all__ = ["Authenticator", "Credential", "Minter", "find_credential", "is_gateway_token", "well_formed"]

MAX_CREDENTIAL_CHARS = 4096


def well_formed(value: str) -> bool:
    """A credential that can be compared and forwarded: printable ASCII, bounded (no CR/LF/NUL, no
    undecodable bytes, which aiohttp keeps as surrogates)."""
    return 0 < len(value) <= MAX_CREDENTIAL_CHARS and value.isascii() and value.isprintable()


@dataclass(slots=True)
class Credential:
    value: str
    scheme: str | None = None
    source: str = ""
    token_only: bool = False
    subprotocol: str | None = None  # the subprotocol to echo when it came from Sec-WebSocket-Protocol
    _sha256: str | None = field(default=None, init=False, repr=False, compare=False)
    _malformed: bool | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def malformed(self) -> bool:
        """Asked by every check a request passes (identity, own ids, authorization): judged once."""
        if self._malformed is None:
            self._malformed = not well_formed(self.value)
        return self._malformed

    def sha256(self) -> str:
        """Hex SHA-256 of the value: the caller's identity, the managed-mode key lookup and the forward-mode
        caller id all need it, in one request (hashed once, kept only as long as the credential)."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self.value.encode()).hexdigest()
        return self._sha256


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
                    # a malformed one is judged (401) but never echoed back in the handshake
                    echo = found[0] if well_formed(found[1]) and well_formed(found[0]) else None
                    return Credential(found[1], found[0].lower(), "subprotocol", src.token_only, echo)
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


def _malformed() -> GatewayError:
    return GatewayError("unauthorized", "Malformed API key or token")


@dataclass(frozen=True, slots=True)
class Minter:
    """Who asks for a token: an API key (never a token), its tenant and the upstream key it stands for."""

    tenant: str
    upstream_key: str
    key_sha256: str


class Authenticator:
    def __init__(self, settings: AuthSettings, default_upstream_key: str | None, issuer: TokenIssuer,
                 used: UsedTokenStore | None = None, route_providers: dict[str, set[str]] | None = None) -> None:
        self.settings = settings
        self.default_key = default_upstream_key
        self.issuer = issuer
        self.used: UsedTokenStore = used if used is not None else MemoryUsedTokens(settings.max_used_tokens)
        # route name -> providers having it, to qualify the bare route names of the synchronous shim
        self.route_providers = route_providers or {}

    async def authorize(self, cred: Credential | None, provider: str, route: str) -> str:
        """The Gradium key for this caller on `provider`'s `route`, or an `unauthorized` error.
        A single-use token is used up here, and only on a route its scopes name."""
        claims = self._token_claims(cred, provider, route)
        if claims is None:
            assert cred is not None
            return self._caller(*self._api_key(cred))
        if claims.single_use and not await self.used.claim(claims.id, claims.expires_at):
            raise GatewayError("unauthorized", "This single-use token was already used")
        return self._caller(claims.tenant, self._token_key(claims))

    def upstream_key(self, cred: Credential | None, scope: str | None = None) -> str:
        """Synchronous form of `authorize` for callers that cannot await (the WebSocket runtime until it
        moves to `authorize`): `scope` is `provider:route`, or a route name whose provider is unique.
        Single-use tokens need the in-process used set here."""
        provider, _, route = (scope or "").rpartition(":")
        if not provider:
            owners = self.route_providers.get(route, set())
            provider = next(iter(owners)) if len(owners) == 1 else ""
        claims = self._token_claims(cred, provider, route)
        if claims is None:
            assert cred is not None
            return self._caller(*self._api_key(cred))
        if claims.single_use:
            if not isinstance(self.used, MemoryUsedTokens):
                raise GatewayError("internal", "single-use tokens on this route need the asynchronous check")
            if not self.used.claim_now(claims.id, claims.expires_at):
                raise GatewayError("unauthorized", "This single-use token was already used")
        return self._caller(claims.tenant, self._token_key(claims))

    def _caller(self, tenant: str | None, upstream_key: str) -> str:
        """Note who the request is for (`custom_ids.CALLER`: the identity the caller's own voice and
        dictionary ids are derived for) and return its upstream key. In forward mode the Gradium key is
        the identity; in managed mode also the tenant (tenants may share one Gradium key)."""
        CALLER.set(Caller(upstream_key, tenant if self.settings.mode == "managed" else None))
        return upstream_key

    def _token_claims(self, cred: Credential | None, provider: str, route: str) -> TokenClaims | None:
        """The verified claims when `cred` is (or must be) a gateway token; None for an API key."""
        if cred is None:
            raise GatewayError("unauthorized", "Missing API key")
        if cred.malformed:
            raise _malformed()
        if not (is_gateway_token(cred.value) or cred.token_only):
            return None
        claims = self.issuer.verify(cred.value)
        if not provider or not claims.allows(provider, route):
            raise GatewayError("unauthorized", "This token is not valid for this endpoint")
        return claims

    def _token_key(self, claims: TokenClaims) -> str:
        if self.settings.mode == "forward":
            if claims.upstream_key is None:
                raise GatewayError("unauthorized", "Invalid or expired token")
            return claims.upstream_key
        # managed: the token lives only as long as the gateway key that minted it is configured
        tenant = next((k.tenant for k in self.settings.keys if k.sha256 == claims.minter), None)
        if tenant is None or tenant != claims.tenant:
            raise GatewayError("unauthorized", "Invalid or expired token")
        return self.tenant_key(tenant)

    def _api_key(self, cred: Credential) -> tuple[str, str]:
        """(tenant, upstream key) for an API key."""
        digest = cred.sha256()
        if self.settings.mode == "forward":
            return "key:" + digest[:16], cred.value
        tenant = self.settings.tenant_of_digest(digest)
        if tenant is None:
            raise GatewayError("unauthorized", "Invalid API key")
        return tenant, self.tenant_key(tenant)

    def tenant_key(self, tenant: str) -> str:
        t = self.settings.tenants[tenant]
        key = t.gradium_api_key.get_secret_value() if t.gradium_api_key else self.default_key
        if not key:
            raise GatewayError("unauthorized", "No Gradium key configured for this tenant")
        return key

    def minter(self, cred: Credential | None) -> Minter:
        """The API key asking for a token. A token never mints a token (it would renew or widen itself)."""
        if cred is None:
            raise GatewayError("unauthorized", "Missing API key")
        if cred.malformed:
            raise _malformed()
        if is_gateway_token(cred.value) or cred.token_only:
            raise GatewayError("forbidden", "A token cannot create tokens; use an API key")
        tenant, key = self._api_key(cred)
        return Minter(tenant, key, cred.sha256())

    def mint(self, minter: Minter, provider: str, routes: list[str], ttl_s: float, *, single_use: bool,
             shape: str = "jwt") -> tuple[str, float]:
        """A token for `provider`'s `routes` (`*`: all of them) that lives `ttl_s` seconds."""
        forward = self.settings.mode == "forward"
        return self.issuer.mint(
            tenant=minter.tenant, scopes=[f"{provider}:{r}" for r in routes], ttl_s=ttl_s, single_use=single_use,
            upstream_key=minter.upstream_key if forward else None, minter=None if forward else minter.key_sha256,
            shape=shape,
        )
