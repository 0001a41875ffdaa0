"""Shadow budgets and the vendor cooldown, without sockets."""

from __future__ import annotations

from gateway.traffic.budget import MemoryBudget, VendorCooldown
from gateway.traffic.settings import Budget, Cooldown, GlobalBudget


def test_daily_caps_per_tenant_and_global() -> None:
    b = MemoryBudget(GlobalBudget(tts_chars_per_day=150))
    acme, beta = Budget(tts_chars_per_day=100), Budget(tts_chars_per_day=100)
    assert b.spend("acme", "gradium", "tts_chars", 90, acme)
    assert not b.spend("acme", "gradium", "tts_chars", 20, acme)  # the tenant's cap
    assert b.spend("beta", "gradium", "tts_chars", 60, beta)
    assert not b.spend("beta", "gradium", "tts_chars", 1, beta)  # the global cap (150)
    assert b.spent("acme", "gradium", "tts_chars") == 90
    assert b.spend("acme", "legacy", "tts_chars", 90, acme)  # per target
    assert b.spend("acme", "gradium", "stt_seconds", 1e6, acme)  # no STT cap configured


def test_concurrency_cap_per_tenant_and_global() -> None:
    b = MemoryBudget(GlobalBudget(max_concurrent=3))
    two = Budget(max_concurrent=2)
    assert b.acquire("acme", "legacy", two) and b.acquire("acme", "legacy", two)
    assert not b.acquire("acme", "legacy", two)
    assert b.acquire("beta", "legacy", two)
    assert not b.acquire("beta", "legacy", two)  # global 3 reached
    b.release("acme", "legacy")
    assert b.acquire("beta", "legacy", two) and b.running("legacy") == 3


def test_cooldown_after_repeated_throttling() -> None:
    c = VendorCooldown(Cooldown(throttles=3, window_s=60, pause_s=300))
    c.throttled("legacy", now=0)
    c.throttled("legacy", now=10)
    assert not c.active("legacy", now=11)
    c.throttled("legacy", now=20)
    assert c.active("legacy", now=21) and c.active("legacy", now=319) and not c.active("legacy", now=321)
    assert not c.active("gradium", now=21)
    # throttles spread wider than the window never pause
    for t in (1000, 1070, 1140):
        c.throttled("gradium", now=t)
    assert not c.active("gradium", now=1141)
