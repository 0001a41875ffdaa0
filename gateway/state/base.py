"""The shared-state interface: claims (set once, for a while), capped counters and leases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class StateUnavailable(Exception):
    """The shared store cannot answer (Redis down or too slow). Callers fail closed: no single-use token
    is accepted and no counted work (a shadow leg) is started while this is raised."""


class SharedState(Protocol):
    async def claim(self, key: str, ttl_s: float) -> bool:
        """True for the first claim of `key` fleet-wide; False while an earlier claim lives (`ttl_s`)."""
        ...

    async def add(self, key: str, amount: float, *, cap: float | None = None,
                  ttl_s: float | None = None) -> float | None:
        """Add `amount` to the counter `key` and return its new value, or None (nothing added) when that
        would pass `cap`. `ttl_s` (re)arms the counter's expiry, e.g. two days for a daily budget."""
        ...

    async def add_all(self, keys: Sequence[str], amount: float, caps: Sequence[float | None],
                      ttl_s: float | None = None) -> list[float] | None:
        """`add` on several counters at once, all or nothing: None (nothing added) when any would pass its
        cap. A negative amount (a refund) is never refused."""
        ...

    async def lease(self, keys: Sequence[str], member: str, ttl_s: float,
                    caps: Sequence[int | None] | None = None) -> int | None:
        """Hold `member` in every set `keys` for `ttl_s` (again: renew), unless a set already holds its cap
        of live members: then None and nothing changes. Returns the live members of the first set.
        Holders that stop renewing (a crashed replica) drop out when their lease expires."""
        ...

    async def unlease(self, keys: Sequence[str], member: str) -> None: ...

    async def get(self, key: str) -> float:
        """The counter's value (0 when absent or expired)."""
        ...

    async def close(self) -> None: ...


class SingleAdd:
    """`add` as the one-counter case of `add_all` (for the implementations)."""

    async def add_all(self, keys: Sequence[str], amount: float, caps: Sequence[float | None],
                      ttl_s: float | None = None) -> list[float] | None:
        raise NotImplementedError

    async def add(self, key: str, amount: float, *, cap: float | None = None,
                  ttl_s: float | None = None) -> float | None:
        values = await self.add_all([key], amount, [cap], ttl_s)
        return None if values is None else values[0]
