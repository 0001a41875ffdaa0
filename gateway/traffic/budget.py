"""Shadow budgets, concurrency caps and vendor cooldown (specs/traffic.md §4.3, §4.4, §9) over `SharedState`.

With `state.redis_url` every worker and replica draws on the same counters (Redis); without it they live
in this process's memory, so caps are per process. Keys (after `state.key_prefix`, default `gw:`):

- `bud:<tenant>:<target>:<unit>:<yyyymmdd>` and `bud:*:<target>:<unit>:<yyyymmdd>`: daily spend (UTC) per
  tenant and fleet-wide, charged together by one script that refuses past either cap; kept two days.
- `conc:<tenant>:<target>` and `conc:*:<target>`: sorted sets of the running legs' ids, each renewed by its
  leg every `LEASE_S / 3`; a leg of a replica that died drops out when its lease expires.
- `cool:<target>` (TTL `pause_s`; `legacy:<provider>` for vendors) after `throttles` refusals within
  `window_s` (`coolhits:<target>`).

Any of these that cannot be read or written raises `StateUnavailable`: callers start no shadow leg then.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

from gateway.state.base import SharedState, StateUnavailable
from gateway.traffic.settings import Budget, Cooldown, GlobalBudget

DAY_TTL_S = 2 * 86400
LEASE_S = 60.0
UNITS = ("tts_chars", "stt_seconds")


def _day() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


class ShadowBudget:
    def __init__(self, state: SharedState, global_budget: GlobalBudget, cooldown: Cooldown) -> None:
        self.state = state
        self.global_budget = global_budget
        self.cooldown = cooldown

    @staticmethod
    def _legs(tenant: str, target: str) -> list[str]:
        return [f"conc:{tenant}:{target}", f"conc:*:{target}"]

    async def acquire(self, tenant: str, target: str, leg_id: str, budget: Budget) -> bool:
        """A place for one more running leg (or the renewal of this one's), within the tenant's and the
        global `max_concurrent`."""
        caps = [budget.max_concurrent, self.global_budget.max_concurrent]
        return await self.state.lease(self._legs(tenant, target), leg_id, LEASE_S, caps) is not None

    async def release(self, tenant: str, target: str, leg_id: str) -> None:
        await self.state.unlease(self._legs(tenant, target), leg_id)

    @staticmethod
    def _spend_keys(tenant: str, target: str, unit: str) -> list[str]:
        day = _day()
        return [f"bud:{tenant}:{target}:{unit}:{day}", f"bud:*:{target}:{unit}:{day}"]

    async def spend(self, tenant: str, target: str, unit: str, amount: float, budget: Budget) -> bool:
        """Reserve `amount` of `unit` (tts_chars | stt_seconds) for today; False, and nothing spent, when
        either the tenant's or the global daily cap would be passed. A negative amount gives back."""
        caps = [getattr(budget, f"{unit}_per_day"), getattr(self.global_budget, f"{unit}_per_day")]
        return await self.state.add_all(self._spend_keys(tenant, target, unit), amount, caps, DAY_TTL_S) is not None

    async def spent(self, tenant: str, target: str, unit: str) -> float:
        return await self.state.get(self._spend_keys(tenant, target, unit)[0])

    async def throttled(self, target: str) -> None:
        """A vendor refusal (429): the `throttles`-th within `window_s` pauses new legs for `pause_s`."""
        c = self.cooldown
        hits = await self.state.lease([f"coolhits:{target}"], uuid.uuid4().hex, c.window_s)
        if hits is not None and hits >= c.throttles:
            await self.state.claim(f"cool:{target}", c.pause_s)

    async def cooling(self, target: str) -> bool:
        return await self.state.get(f"cool:{target}") > 0


# reservations against the shared budget (specs/traffic.md §4.4); what is not used is given back at the end
RESERVE_STEP = {"tts_chars": 500.0, "stt_seconds": 30.0}


class LegAccount:
    """One shadow leg's draw on the budget: its admission (cooldown, caps), its heartbeat, its spend reserved
    a step at a time (one shared-state call per step, not per frame) and settled when it ends."""

    def __init__(self, budget: ShadowBudget, tenant: str, target: str, leg_id: str, caps: Budget,
                 vendor: str | None = None) -> None:
        self.budget = budget
        self.tenant, self.target, self.leg_id, self.caps = tenant, target, leg_id, caps
        # throttling is the vendor's own: a 429 from ElevenLabs pauses shadows to ElevenLabs, not to Deepgram
        self.cool_key = f"{target}:{vendor}" if vendor is not None and target == "legacy" else target
        self.cost: dict[str, float] = dict.fromkeys(UNITS, 0.0)
        self.reserved: dict[str, float] = dict.fromkeys(UNITS, 0.0)
        self.leased = False
        self._renewer: asyncio.Task[None] | None = None

    async def admit(self) -> str | None:
        """None when the leg may start, else why not: `cooldown`, `dropped_concurrency`, `state_unavailable`."""
        try:
            if await self.budget.cooling(self.cool_key):
                return "cooldown"
            self.leased = True  # from here a lease may exist (even if this call is cancelled mid-way)
            if not await self.budget.acquire(self.tenant, self.target, self.leg_id, self.caps):
                return "dropped_concurrency"
        except StateUnavailable:
            return "state_unavailable"  # Redis down: no new shadow legs
        self._renewer = asyncio.create_task(self._renew(), name=f"shadow-lease:{self.leg_id}")
        return None

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            with contextlib.suppress(StateUnavailable):
                await self.budget.acquire(self.tenant, self.target, self.leg_id, self.caps)

    async def charge(self, unit: str, amount: float) -> bool:
        """Count `amount` of `unit`; False (nothing counted) when the reservation it needs is refused.
        Raises `StateUnavailable` when the shared state cannot say."""
        need = self.cost[unit] + amount - self.reserved[unit]
        if need > 0:
            for step in (max(RESERVE_STEP[unit], need), need):
                if await self.budget.spend(self.tenant, self.target, unit, step, self.caps):
                    self.reserved[unit] += step
                    break
            else:
                return False
        self.cost[unit] += amount
        return True

    async def settle(self, throttled: bool) -> None:
        """Give back what was reserved and not used, free the leg's place, note a vendor refusal."""
        if self._renewer is not None:
            self._renewer.cancel()
        with contextlib.suppress(StateUnavailable):
            for unit, reserved in self.reserved.items():
                if (unused := reserved - self.cost[unit]) > 0:
                    await self.budget.spend(self.tenant, self.target, unit, -unused, self.caps)
            if self.leased:
                await self.budget.release(self.tenant, self.target, self.leg_id)
            if throttled:
                await self.budget.throttled(self.cool_key)
