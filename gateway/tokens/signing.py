"""Signing and verifying gateway tokens (HS256 JWTs via PyJWT) under the configured `auth.token_secret`.

A token carries everything needed to honour it on any worker or replica, after a restart: its id
(`jti`), tenant, scopes (`provider:route` or `provider:*`), expiry and whether it is single-use. In
forward mode the minter's Gradium key travels sealed (AES-GCM, bound to the token id) in `uk`, so it
never reaches a browser in the clear; in managed mode `mk` names the minter's gateway key, so a token
dies with the key that minted it.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import GatewayError

ISSUER = "gradium-gateway"
KID = "gradium-gateway"
TOKEN_PREFIX = "gwt_"  # the opaque shape (ElevenLabs single-use tokens): the same JWT behind a prefix
MAX_TOKEN_CHARS = 4096
# The header segment is fixed (sorted alg/kid/typ), so it alone tells our tokens from any other JWT.
JWT_PREFIX = jwt.encode({}, b"k" * 32, algorithm="HS256", headers={"kid": KID}).split(".")[0] + "."


def is_gateway_token(value: str) -> bool:
    return value.startswith((TOKEN_PREFIX, JWT_PREFIX))


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _invalid() -> GatewayError:
    return GatewayError("unauthorized", "Invalid or expired token")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    id: str
    tenant: str
    scopes: tuple[str, ...]
    expires_at: float
    single_use: bool
    upstream_key: str | None = None  # forward mode: the minter's Gradium key
    minter: str | None = None  # managed mode: SHA-256 (hex) of the minter's gateway key

    def allows(self, provider: str, route: str) -> bool:
        return f"{provider}:{route}" in self.scopes or f"{provider}:*" in self.scopes


class TokenIssuer:
    def __init__(self, secret: bytes) -> None:
        self._sign = _derive(secret, b"gradium-gateway token signing")
        self._seal = AESGCM(_derive(secret, b"gradium-gateway token sealing"))

    def mint(self, *, tenant: str, scopes: list[str], ttl_s: float, single_use: bool,
             upstream_key: str | None = None, minter: str | None = None, shape: str = "jwt") -> tuple[str, float]:
        """A signed token and its expiry (epoch seconds); `shape: opaque` puts it behind `gwt_`."""
        now = int(time.time())
        exp = now + max(1, round(ttl_s))
        jti = secrets.token_urlsafe(16)
        claims: dict[str, object] = {"iss": ISSUER, "jti": jti, "iat": now, "nbf": now, "exp": exp,
                                     "tenant": tenant, "scope": list(scopes), "single_use": single_use}
        if upstream_key is not None:
            nonce = secrets.token_bytes(12)
            claims["uk"] = _b64(nonce + self._seal.encrypt(nonce, upstream_key.encode(), jti.encode()))
        if minter is not None:
            claims["mk"] = minter
        token = jwt.encode(claims, self._sign, algorithm="HS256", headers={"kid": KID})
        return (TOKEN_PREFIX + token if shape == "opaque" else token), float(exp)

    def verify(self, token: str) -> TokenClaims:
        """The claims of a genuine, unexpired token; anything else is an `unauthorized` error."""
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid()
        raw = token[len(TOKEN_PREFIX):] if token.startswith(TOKEN_PREFIX) else token
        try:
            c = jwt.decode(raw, self._sign, algorithms=["HS256"], issuer=ISSUER,
                           options={"require": ["exp", "iat", "jti", "iss"]})
        except jwt.InvalidTokenError:
            raise _invalid() from None
        scopes, jti, tenant = c.get("scope"), c.get("jti"), c.get("tenant")
        if not (isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)
                and isinstance(jti, str) and isinstance(tenant, str)):
            raise _invalid()
        upstream_key = None
        if isinstance(c.get("uk"), str):
            try:
                blob = _unb64(c["uk"])
                upstream_key = self._seal.decrypt(blob[:12], blob[12:], jti.encode()).decode()
            except (InvalidTag, ValueError):
                raise _invalid() from None
        minter = c.get("mk") if isinstance(c.get("mk"), str) else None
        return TokenClaims(jti, tenant, tuple(scopes), float(c["exp"]), c.get("single_use") is True,
                           upstream_key, minter)
