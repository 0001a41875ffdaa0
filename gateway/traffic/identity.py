"""Who is calling (tenant, a stable credential id) and which vendor key serves them on the legacy side.

Managed mode: gateway key -> tenant -> `legacy_keys[vendor]`; a gateway-minted token carries its
minter's tenant. Forward mode: `legacy.<vendor>.api_key` when set, else the client's own credential is
what the vendor receives (a token stands for its minter's key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateway.auth import Authenticator, Credential
from gateway.errors import GatewayError
from gateway.tokens import is_gateway_token


@dataclass(slots=True)
class Caller:
    tenant: str | None = None
    identity: str | None = None  # sha256 of the gateway key, or of the minter's key for a token
    allow_overrides: bool = False


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def is_token(cred: Credential) -> bool:
    return is_gateway_token(cred.value) or cred.token_only


def identify(auth: Authenticator, cred: Credential | None) -> Caller:
    """Read-only: a single-use token is not used up here (the unit's own handler claims it)."""
    if cred is None or cred.malformed:
        return Caller()
    forward = auth.settings.mode == "forward"
    if is_token(cred):
        try:
            claims = auth.issuer.verify(cred.value)
        except GatewayError:
            return Caller()
        if forward:
            return Caller(None, _sha(claims.upstream_key) if claims.upstream_key else None)
        return Caller(claims.tenant, claims.minter)
    digest = cred.sha256()
    if forward:
        return Caller(None, digest)
    for k in auth.settings.keys:
        if k.sha256 == digest:
            return Caller(k.tenant, digest, k.allow_overrides)
    return Caller(None, digest)


async def vendor_key(auth: Authenticator, cred: Credential | None, provider: str, route: str,
                     configured: str | None) -> str:
    """The key to present to the vendor, after the same checks the Gradium side makes (a single-use
    token is used up here, once). `configured`: forward mode's `legacy.<vendor>.api_key`."""
    upstream = await auth.authorize(cred, provider, route)  # `unauthorized` exactly like the Gradium path
    assert cred is not None
    if auth.settings.mode == "forward":
        return configured or upstream
    tenant = auth.issuer.verify(cred.value).tenant if is_token(cred) else auth.settings.tenant_of_digest(cred.sha256())
    entry = auth.settings.tenants.get(tenant) if tenant else None
    key = entry.legacy_keys.get(provider) if entry is not None else None
    if key is None:
        raise GatewayError("unauthorized", f"No {provider} key configured for this tenant")
    return key.get_secret_value()
