"""Shadowing WebSocket units to the other side (specs/traffic.md §4), as an addon that observes sessions.

The router asks `Shadow.plan` once per unit (sampling, privacy flags, keys); a plan is
handed to the session through a context variable and picked up by `ShadowAddon.session_start`. From then
on the primary only `offer`s each client frame to the leg's bounded queue (`client_frame`) and marks the
end of its input (`session_end`); the leg runs in its own task with its own deadlines. Nothing of the
shadow reaches the client: not its status, headers, frames or latency. Every leg ends with one outcome,
counted in `gateway_shadow_legs_total` and logged as `shadow.end` with the pair id on both legs' lines.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog
from aiohttp import web
from multidict import CIMultiDict

from gateway.mapping.compiler import CompiledMapping, CompiledRoute
from gateway.state.base import SharedState
from gateway.traffic.budget import ShadowBudget
from gateway.traffic.loopback import Loopback
from gateway.traffic.metrics import TrafficMetrics
from gateway.traffic.policy import BUCKETS, Unit, bucket
from gateway.traffic.settings import ShadowRule, ShadowSettings
from gateway.traffic.tee import BodyTee
from gateway.traffic.trace import uuid7

log = structlog.get_logger("gateway.shadow")
PLAN: contextvars.ContextVar[ShadowPlan | None] = contextvars.ContextVar("gateway_shadow_plan", default=None)
CONNECT_TIMEOUT_S = 10.0
DEFER_CAP_S = 1.0  # a TTS shadow waits at most this long for the primary's first output before it dials


class LiveLeg(Protocol):
    task: asyncio.Task[None] | None  # None until the leg starts (`drop` starts it)

    def drop(self, outcome: str) -> None: ...


@dataclass(slots=True)
class ShadowPlan:
    unit: Unit
    mapping: CompiledMapping
    route: CompiledRoute
    rule: ShadowRule
    primary: str
    side: str  # gradium | legacy
    tenant: str
    key: str
    path: dict[str, str]
    raw_query: str
    headers: CIMultiDict[str]
    pair_id: str = field(default_factory=uuid7)
    primary_request_id: str | None = None
    method: str = "GET"
    body: bytes | BodyTee | None = None  # REST: the primary's request body (or its copy while it is read)
    pair_kind: str = "candidate"  # noise: a same-side copy (§5.4)
    noise: ShadowPlan | None = None  # the unit's noise copy, when sampled by `noise_rate`
    sticky_reason: str | None = None  # why the unit went to its primary side (header, native, force ...)


class Shadow:
    """Per app: settings, budgets, cooldown; decides which units get a leg."""

    def __init__(self, app: web.Application, settings: ShadowSettings, metrics: TrafficMetrics,
                 legacy: dict[str, Any], session_of: Any, state: SharedState) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.legacy = legacy
        self.session_of = session_of  # () -> the vendor ClientSession
        self.loopback = Loopback(app)  # the Gradium side of REST legs
        # in Redis with `state.redis_url` (shared by every worker and replica), else in this process
        self.budget = ShadowBudget(state, settings.global_budget, settings.vendor_cooldown)
        self.rng = random.Random()
        self.legs: set[LiveLeg] = set()  # shadow_leg.ShadowLeg, registered by the addon
        self.finished: list[dict[str, Any]] = []  # the last outcomes, for tests and the log sink
        self.on_pair: list[Any] = []  # callbacks(row, leg) once a pair is complete
        self.version: str | None = None  # the traffic configuration's version, on every stored pair

    def rule_for(self, unit: Unit) -> ShadowRule | None:
        from gateway.traffic.policy import _matches

        return next((r for r in self.settings.rules if _matches(r.match, unit)), None)

    def count(self, plan_or_unit: ShadowPlan | Unit, side: str, outcome: str, kind: str = "candidate") -> None:
        unit = plan_or_unit.unit if isinstance(plan_or_unit, ShadowPlan) else plan_or_unit
        kind = plan_or_unit.pair_kind if isinstance(plan_or_unit, ShadowPlan) else kind
        self.metrics.shadow_legs.labels(unit.provider, unit.route, side, kind, outcome).inc()

    def count_unstarted(self, plan: ShadowPlan, outcome: str) -> None:
        """A planned unit whose legs were never made: its candidate and its noise copy, each counted."""
        for each in (plan, plan.noise) if plan.noise is not None else (plan,):
            self.count(each, each.side, outcome)

    async def close(self) -> None:
        for leg in list(self.legs):
            leg.drop("shadow_error")
        await asyncio.gather(*(leg.task for leg in list(self.legs) if leg.task is not None), return_exceptions=True)
        await self.loopback.close()

    def sampled(self, rule: ShadowRule | None, unit: Unit, forced: bool) -> bool:
        if forced:
            return True
        if rule is None or rule.rate <= 0:
            return False
        if rule.sample_by == "conversation":
            key = next((unit.keys[k] for k in ("header", "native", "credential") if unit.keys.get(k)), None)
            if key is not None:  # every unit of a sampled conversation, on every replica
                return bucket("shadow", unit.tenant, key) < round(rule.rate * BUCKETS)
        return self.rng.random() < rule.rate

    def plan(self, unit: Unit, primary: str, mapping: CompiledMapping, route: CompiledRoute,
             request: web.Request, keys: dict[str, str], forced: bool = False,
             reason: str | None = None) -> ShadowPlan | None:
        """A leg for this unit, or None (counted with the reason when the unit was sampled). `forced`:
        `X-Gateway-Shadow: 1` from a key with `allow_overrides` (still budgeted); `reason`: the split's."""
        if not self.settings.enabled or mapping.legacy is None:
            return None
        rule = self.rule_for(unit)
        if not self.sampled(rule, unit, forced):
            return None
        rule = rule or ShadowRule(rate=0)
        side = ("legacy" if primary == "gradium" else "gradium") if self.settings.shadow_target == "other" \
            else self.settings.shadow_target
        if side == primary:
            return None  # a same-side copy only comes with a candidate leg: `noise_rate` (§5.4)
        if not route.is_ws and "callback" in request.query:
            self.count(unit, side, "skipped_unsupported")  # the primary's answer goes to the callback, unseen
            return None
        if self.settings.respect_privacy_flags and _private(mapping, request):
            self.count(unit, side, "skipped_privacy")
            return None
        key = keys.get(side)
        if not key:
            self.count(unit, side, "skipped_unsupported")
            return None
        # cooldown and caps are asked by the leg's own task (`LegAccount.admit`): shared state may be remote,
        # and the primary never waits for it
        tenant = unit.tenant or "-"
        plan = ShadowPlan(unit, mapping, route, rule, primary, side, tenant, key, dict(request.match_info),
                          request.rel_url.raw_query_string, CIMultiDict(request.headers), method=request.method,
                          sticky_reason=reason)
        if rule.noise_rate > 0 and self.rng.random() < rule.noise_rate:
            plan.noise = self._noise(plan, keys)
        return plan

    def _noise(self, plan: ShadowPlan, keys: dict[str, str]) -> ShadowPlan | None:
        """The unit's same-side copy (§5.4), of the primary's side or the candidate's: it needs that side's
        shadow key, and its leg is admitted and charged like the candidate's (same cooldown, caps, budgets)."""
        side = plan.primary if plan.rule.noise_target == "primary" else plan.side
        if not keys.get(side):
            self.count(plan.unit, side, "skipped_unsupported", "noise")
            return None
        return replace(plan, side=side, key=keys[side], pair_id=uuid7(), pair_kind="noise")


def _private(mapping: CompiledMapping, request: web.Request) -> bool:
    assert mapping.legacy is not None
    for where, value in mapping.legacy.shadow.privacy.items():
        kind, _, name = where.partition(".")
        got = request.query.get(name) if kind == "query" else request.headers.get(name)
        if got is not None and str(got).lower() == str(value).lower():
            return True
    return False
