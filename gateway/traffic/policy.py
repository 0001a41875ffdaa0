"""Which side serves a unit (a REST request or a WebSocket): pure, no I/O (specs/traffic.md §3).

`decide` takes what the router read from the request (tenant, route, sticky keys, overrides) and the
traffic settings, and returns the target with the reason. The bucket is a salted keyed hash, so every
replica with the same configuration answers the same, and a key keeps its bucket when weights change:
raising the Gradium weight only ever moves keys from legacy to Gradium.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from gateway.traffic.settings import Match, SplitRule, Target, TrafficSettings

BUCKETS = 10_000  # 0.01 % resolution
_DEFAULT_ORDER = ("header", "native", "credential")  # `sticky_by` without a rule


@dataclass(slots=True)  # not frozen: a frozen dataclass sets each field through object.__setattr__
class Unit:
    """What the split may look at, read once when the unit starts."""

    provider: str
    route: str
    kind: str  # tts | stt
    transport: str  # rest | ws
    tenant: str | None = None
    keys: dict[str, str] = field(default_factory=dict)  # sticky source -> key (header, native, credential)
    stitched: Target | None = None  # the side that issued the ids this request continues
    override: Target | None = None  # X-Gateway-Target from a key with `allow_overrides`
    own_object: bool = False  # names the caller's own Gradium voice or dictionary (traffic/own_ids.py)


@dataclass(slots=True)  # not frozen either (one per unit)
class Decision:
    target: Target
    reason: str  # header|native|credential|request|force|override|stitching|own_object|serve|failover
    bucket: int | None = None
    weight: float | None = None
    rule: int | None = None  # index in `traffic.rules`; None: the default weights
    failover: bool = False  # `failover: connect` allowed for this unit


def bucket(salt: str, tenant: str | None, key: str) -> int:
    digest = hashlib.blake2b(
        (tenant or "").encode() + b"\x00" + key.encode(), key=salt.encode()[:64], digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def _matches(m: Match, unit: Unit) -> bool:
    for name, value in (("tenant", unit.tenant), ("provider", unit.provider), ("route", unit.route)):
        allowed = m.names(name)
        if allowed and value not in allowed:
            return False
    return (m.kind is None or m.kind == unit.kind) and (m.transport is None or m.transport == unit.transport)


def find_rule(settings: TrafficSettings, unit: Unit) -> tuple[int | None, SplitRule | None]:
    for i, rule in enumerate(settings.rules):
        if _matches(rule.match, unit):
            return i, rule
    return None, None


def weight_at(rule: SplitRule | None, default: float, now: datetime) -> float:
    """The Gradium weight in force at `now`: the last ramp step reached, else the rule's weights."""
    if rule is None:
        return default
    w = rule.weights.gradium if rule.weights is not None else 0.0
    for step in rule.ramp:
        if step.at <= now:
            w = step.gradium
    return w


def failover_allowed(rule: SplitRule | None, kind: str) -> bool:
    mode = rule.failover if rule is not None and rule.failover is not None else ("connect" if kind == "stt" else "none")
    return mode == "connect"


def decide(settings: TrafficSettings, unit: Unit, now: datetime) -> Decision:
    index, rule = find_rule(settings, unit) if settings.rules else (None, None)
    if unit.own_object:  # only Gradium knows the id: any other side (even a rollback) could only fail
        return Decision("gradium", "own_object", rule=index, failover=False)
    if settings.force is not None:
        return Decision(settings.force, "force", rule=index)
    if unit.override is not None:
        return Decision(unit.override, "override", rule=index)
    if rule is not None and rule.serve is not None:
        return Decision(rule.serve, "serve", rule=index)
    if unit.stitched is not None:
        return Decision(unit.stitched, "stitching", rule=index, failover=False)
    weight = weight_at(rule, settings.default.gradium, now)
    reason, key = _reason(rule, unit)
    failover = failover_allowed(rule, unit.kind)
    if weight >= 100 or weight <= 0:
        target: Target = "gradium" if weight >= 100 else "legacy"
        return Decision(target, reason, None, weight, index, failover and _to_zero(rule))
    salt = rule.salt if rule is not None and rule.salt else settings.salt
    b = bucket(salt, unit.tenant, key) if key is not None else secrets.randbelow(BUCKETS)
    target = "gradium" if b < round(weight * 100) else "legacy"
    return Decision(target, reason, bucket=b, weight=weight, rule=index, failover=failover)


def _to_zero(rule: SplitRule | None) -> bool:
    """At weight 0 or 100 the other side takes no traffic: failing over to it needs an explicit yes."""
    return rule is not None and rule.failover_to_zero_weight


def _reason(rule: SplitRule | None, unit: Unit) -> tuple[str, str | None]:
    """The first sticky source present, in the rule's order; `request` (a fresh bucket) when none is."""
    order = rule.sticky_by if rule is not None else _DEFAULT_ORDER
    for source in order:
        if source == "request":
            return "request", None
        key = unit.keys.get(source)
        if key:
            return source, key
    return "request", None


def legacy_possible(settings: TrafficSettings) -> bool:
    """Whether any unit can go to the legacy vendor: when not, the router costs nothing."""
    if settings.force is not None:
        return settings.force == "legacy"
    if settings.default.gradium < 100:
        return True
    for rule in settings.rules:
        if rule.serve == "legacy" or (rule.weights is not None and rule.weights.gradium < 100):
            return True
        if any(step.gradium < 100 for step in rule.ramp):
            return True
    return False


def gradium_possible(settings: TrafficSettings) -> bool:
    if settings.force is not None:
        return settings.force == "gradium"
    if settings.default.gradium > 0:
        return True
    return any(rule.serve == "gradium" or (rule.weights is not None and rule.weights.gradium > 0)
               or any(step.gradium > 0 for step in rule.ramp) for rule in settings.rules)
