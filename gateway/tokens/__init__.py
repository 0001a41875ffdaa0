"""Gateway-minted tokens: signed, self-contained JWTs plus the one piece of state they need (the
"already used" set of single-use tokens), behind a small store interface."""

from gateway.tokens.signing import JWT_PREFIX, MAX_TOKEN_CHARS, TOKEN_PREFIX, TokenClaims, TokenIssuer, is_gateway_token
from gateway.tokens.store import MemoryUsedTokens, UsedTokenStore

__all__ = [
    "JWT_PREFIX",
    "MAX_TOKEN_CHARS",
    "TOKEN_PREFIX",
    "MemoryUsedTokens",
    "TokenClaims",
    "TokenIssuer",
    "UsedTokenStore",
    "is_gateway_token",
]
