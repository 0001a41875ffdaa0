"""Shared state for one process: a bounded dict with expiries. Right for one worker; with several, each
worker has its own (the supervisor warns)."""

from __future__ import annotations

import heapq
import time

from gateway.state.base import StateUnavailable


class MemoryState:
    def __init__(self, max_keys: int = 200_000) -> None:
        self.max_keys = max_keys
        self._values: dict[str, tuple[int, float]] = {}  # key -> (value, expires at; inf: never)
        self._expiries: list[tuple[float, str]] = []

    def _now(self) -> float:
        return time.monotonic()

    def _sweep(self, now: float) -> None:
        heap = self._expiries
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            entry = self._values.get(key)
            if entry is not None and entry[1] == at:
                del self._values[key]

    def _live(self, key: str, now: float) -> tuple[int, float] | None:
        entry = self._values.get(key)
        return entry if entry is not None and entry[1] > now else None

    def _set(self, key: str, value: int, ttl_s: float | None, now: float, keep: float | None = None) -> None:
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

    async def add(self, key: str, amount: int, *, cap: int | None = None, ttl_s: float | None = None) -> int | None:
        now = self._now()
        self._sweep(now)
        entry = self._live(key, now)
        value = (entry[0] if entry else 0) + amount
        if cap is not None and value > cap:
            return None
        self._set(key, value, ttl_s, now, keep=entry[1] if entry else None)
        return value

    async def get(self, key: str) -> int:
        entry = self._live(key, self._now())
        return entry[0] if entry else 0

    async def close(self) -> None:
        self._values.clear()
        self._expiries.clear()
