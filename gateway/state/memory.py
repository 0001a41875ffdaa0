"""Shared state for one process: a bounded dict with expiries. Right for one worker; with several, each
worker has its own (the supervisor warns)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence

from gateway.state.base import SingleAdd, StateUnavailable


class MemoryState(SingleAdd):
    def __init__(self, max_keys: int = 200_000) -> None:
        self.max_keys = max_keys
        self._values: dict[str, tuple[float, float]] = {}  # key -> (value, expires at; inf: never)
        self._expiries: list[tuple[float, str]] = []
        self._leases: dict[str, dict[str, float]] = {}  # set -> member -> expires at

    def _now(self) -> float:
        return time.monotonic()

    def _sweep(self, now: float) -> None:
        heap = self._expiries
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            entry = self._values.get(key)
            if entry is not None and entry[1] == at:
                del self._values[key]

    def _live(self, key: str, now: float) -> tuple[float, float] | None:
        entry = self._values.get(key)
        return entry if entry is not None and entry[1] > now else None

    def _set(self, key: str, value: float, ttl_s: float | None, now: float, keep: float | None = None) -> None:
        if key not in self._values and len(self._values) >= self.max_keys:
            # Refusing, never forgetting: forgetting a claim would let a single-use token be replayed.
            raise StateUnavailable(f"in-memory state is full ({self.max_keys} live keys)")
        expires = now + ttl_s if ttl_s is not None else (keep if keep is not None else float("inf"))
        self._values[key] = (value, expires)
        if expires != float("inf"):
            heapq.heappush(self._expiries, (expires, key))

    async def claim(self, key: str, ttl_s: float) -> bool:
        now = self._now()
        self._sweep(now)
        if self._live(key, now) is not None:
            return False
        self._set(key, 1, max(ttl_s, 0.001), now)
        return True

    async def add_all(self, keys: Sequence[str], amount: float, caps: Sequence[float | None],
                      ttl_s: float | None = None) -> list[float] | None:
        now = self._now()
        self._sweep(now)
        entries = [self._live(key, now) for key in keys]
        values = [(e[0] if e else 0) + amount for e in entries]
        if amount > 0 and any(cap is not None and v > cap for v, cap in zip(values, caps, strict=True)):
            return None
        if len(self._values) + sum(e is None for e in entries) > self.max_keys:
            raise StateUnavailable(f"in-memory state is full ({self.max_keys} live keys)")
        for key, value, entry in zip(keys, values, entries, strict=True):
            self._set(key, value, ttl_s, now, keep=entry[1] if entry else None)
        return values

    async def lease(self, keys: Sequence[str], member: str, ttl_s: float,
                    caps: Sequence[int | None] | None = None) -> int | None:
        now = self._now()
        sets = []
        for key in keys:
            held = self._leases.setdefault(key, {})
            for m in [m for m, until in held.items() if until <= now]:
                del held[m]
            sets.append(held)
        for held, cap in zip(sets, caps or [None] * len(sets), strict=True):
            if cap is not None and member not in held and len(held) >= cap:
                return None
        for held in sets:
            held[member] = now + ttl_s
        return len(sets[0]) if sets else 0

    async def unlease(self, keys: Sequence[str], member: str) -> None:
        for key in keys:
            self._leases.get(key, {}).pop(member, None)

    async def get(self, key: str) -> float:
        entry = self._live(key, self._now())
        return entry[0] if entry else 0

    async def close(self) -> None:
        self._values.clear()
        self._expiries.clear()
        self._leases.clear()
