"""The "already used" set of single-use tokens: the only state tokens need.

`UsedTokenStore` is the interface (a shared implementation, e.g. Redis, makes single-use hold across
workers and replicas); `MemoryUsedTokens` keeps it in this process, bounded.
"""

from __future__ import annotations

import heapq
import time
from typing import Protocol

from gateway.errors import GatewayError

# An entry outlives its token's expiry by this much, so clock skew between workers cannot reopen it.
EXPIRY_MARGIN_S = 60.0


class UsedTokenStore(Protocol):
    async def claim(self, token_id: str, expires_at: float) -> bool:
        """True the first time `token_id` is claimed; False once it was (until `expires_at`)."""
        ...


class MemoryUsedTokens:
    """In-process used set, at most `max_entries` live entries: when full of unexpired tokens a claim is
    refused as `rate_limited` (never by forgetting a used token, which would let it be replayed)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._used: dict[str, float] = {}
        self._by_expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._used)

    async def claim(self, token_id: str, expires_at: float) -> bool:
        return self.claim_now(token_id, expires_at)

    def claim_now(self, token_id: str, expires_at: float) -> bool:
        self._sweep(time.time())
        if token_id in self._used:
            return False
        if len(self._used) >= self.max_entries:
            raise GatewayError("rate_limited", "Too many single-use tokens outstanding; try again later")
        keep_until = expires_at + EXPIRY_MARGIN_S
        self._used[token_id] = keep_until
        heapq.heappush(self._by_expiry, (keep_until, token_id))
        return True

    def _sweep(self, now: float) -> None:
        heap = self._by_expiry
        while heap and heap[0][0] <= now:
            _, token_id = heapq.heappop(heap)
            self._used.pop(token_id, None)
