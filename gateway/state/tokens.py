"""The used-token store of single-use tokens on top of `SharedState`: `SET gw:tok:<id> 1 NX` fleet-wide."""

from __future__ import annotations

import time

from gateway.errors import GatewayError
from gateway.state.base import SharedState, StateUnavailable

# An entry outlives its token's expiry by this much, so clock skew between replicas cannot reopen it.
EXPIRY_MARGIN_S = 60.0


class SharedUsedTokens:
    def __init__(self, state: SharedState) -> None:
        self.state = state

    async def claim(self, token_id: str, expires_at: float) -> bool:
        ttl = expires_at - time.time() + EXPIRY_MARGIN_S
        try:
            return await self.state.claim(f"tok:{token_id}", ttl)
        except StateUnavailable:
            # Fail closed: accepting it unchecked could let a single-use token be used twice.
            raise GatewayError(
                "unauthorized",
                "Single-use tokens cannot be checked right now: the gateway's shared state store is unreachable",
            ) from None
