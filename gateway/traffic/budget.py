"""Shadow budgets and vendor cooldown, in memory (specs/traffic.md §4.3, §4.4).

Counters are per tenant x shadow target x UTC day, plus global caps; concurrency is counted per tenant x
target and globally. A Redis-backed implementation can replace `MemoryBudget` behind the same methods
(several replicas then share the caps); without it, caps are per replica.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from datetime import UTC, datetime

from gateway.traffic.settings import Budget, Cooldown, GlobalBudget


def _day() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


class MemoryBudget:
    def __init__(self, global_budget: GlobalBudget) -> None:
        self.global_budget = global_budget
        self._spent: dict[tuple[str, str, str, str], float] = defaultdict(float)  # (scope, target, unit, day)
        self._running: dict[tuple[str, str], int] = defaultdict(int)  # (scope, target)

    def acquire(self, tenant: str, target: str, budget: Budget) -> bool:
        """One more concurrent leg, if both the tenant's and the global cap allow it."""
        if self._running[(tenant, target)] >= budget.max_concurrent:
            return False
        if self._running[("*", target)] >= self.global_budget.max_concurrent:
            return False
        self._running[(tenant, target)] += 1
        self._running[("*", target)] += 1
        return True

    def release(self, tenant: str, target: str) -> None:
        for scope in (tenant, "*"):
            self._running[(scope, target)] = max(0, self._running[(scope, target)] - 1)

    def running(self, target: str) -> int:
        return self._running[("*", target)]

    def spend(self, tenant: str, target: str, unit: str, amount: float, budget: Budget) -> bool:
        """Reserve `amount` of `unit` (tts_chars | stt_seconds) for today; False, and nothing spent, when
        either the tenant's or the global daily cap would be passed."""
        day = _day()
        caps = ((tenant, getattr(budget, f"{unit}_per_day")), ("*", getattr(self.global_budget, f"{unit}_per_day")))
        for scope, cap in caps:
            if cap is not None and self._spent[(scope, target, unit, day)] + amount > cap:
                return False
        for scope, _ in caps:
            self._spent[(scope, target, unit, day)] += amount
        return True

    def spent(self, tenant: str, target: str, unit: str) -> float:
        return self._spent[(tenant, target, unit, _day())]


class VendorCooldown:
    """After `throttles` refusals within `window_s`, no new shadow legs to that target for `pause_s`."""

    def __init__(self, settings: Cooldown) -> None:
        self.settings = settings
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._paused_until: dict[str, float] = {}

    def throttled(self, target: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        hits = self._hits[target]
        hits.append(now)
        while hits and hits[0] < now - self.settings.window_s:
            hits.popleft()
        if len(hits) >= self.settings.throttles:
            self._paused_until[target] = now + self.settings.pause_s
            hits.clear()

    def active(self, target: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self._paused_until.get(target, 0.0) > now
