"""The shared-state interface: claims (set once, for a while) and capped counters."""

from __future__ import annotations

from typing import Protocol


class StateUnavailable(Exception):
    """The shared store cannot answer (Redis down or too slow). Callers fail closed: no single-use token
    is accepted and no counted work (a shadow leg) is started while this is raised."""


class SharedState(Protocol):
    async def claim(self, key: str, ttl_s: float) -> bool:
        """True for the first claim of `key` fleet-wide; False while an earlier claim lives (`ttl_s`)."""
        ...

    async def add(self, key: str, amount: int, *, cap: int | None = None, ttl_s: float | None = None) -> int | None:
        """Add `amount` to the counter `key` and return its new value, or None (nothing added) when that
        would pass `cap`. `ttl_s` (re)arms the counter's expiry, e.g. two days for a daily budget."""
        ...

    async def get(self, key: str) -> int:
        """The counter's value (0 when absent or expired)."""
        ...

    async def close(self) -> None: ...
