"""Shadow budgets, caps and the vendor cooldown over in-process shared state (a fake clock, no sockets);
tests/fleet/test_shadow_fleet.py runs the same over a real Redis shared by two gateway processes."""

from __future__ import annotations

from gateway.state import MemoryState
from gateway.traffic.budget import ShadowBudget
from gateway.traffic.settings import Budget, Cooldown, GlobalBudget


class Clock(MemoryState):
    t = 1000.0

    def _now(self) -> float:
        return self.t


async def test_daily_caps_per_tenant_and_global() -> None:
    b = ShadowBudget(MemoryState(), GlobalBudget(tts_chars_per_day=150), Cooldown())
    acme, beta = Budget(tts_chars_per_day=100), Budget(tts_chars_per_day=100)
    assert await b.spend("acme", "gradium", "tts_chars", 90, acme)
    assert not await b.spend("acme", "gradium", "tts_chars", 20, acme)  # the tenant's cap
    assert await b.spend("beta", "gradium", "tts_chars", 60, beta)
    assert not await b.spend("beta", "gradium", "tts_chars", 1, beta)  # the global cap (150)
    assert await b.spent("acme", "gradium", "tts_chars") == 90
    assert await b.spend("acme", "gradium", "tts_chars", -40, acme)  # an unused reservation given back
    assert await b.spend("beta", "gradium", "tts_chars", 40, beta)
    assert await b.spend("acme", "legacy", "tts_chars", 90, acme)  # per target
    assert await b.spend("acme", "gradium", "stt_seconds", 1e6, acme)  # no STT cap configured


async def test_concurrency_cap_per_tenant_and_global_with_leases() -> None:
    state = Clock()
    b = ShadowBudget(state, GlobalBudget(max_concurrent=3), Cooldown())
    two = Budget(max_concurrent=2)
    assert await b.acquire("acme", "legacy", "l1", two) and await b.acquire("acme", "legacy", "l2", two)
    assert not await b.acquire("acme", "legacy", "l3", two)
    assert await b.acquire("beta", "legacy", "l4", two)
    assert not await b.acquire("beta", "legacy", "l5", two)  # global 3 reached
    await b.release("acme", "legacy", "l1")
    assert await b.acquire("beta", "legacy", "l5", two)
    state.t += 30
    assert await b.acquire("acme", "legacy", "l2", two)  # l2's heartbeat; l4 and l5 go silent
    state.t += 45  # past l4/l5's lease (60 s): a crashed replica's legs free their places
    assert await b.acquire("beta", "legacy", "l6", two) and await b.acquire("acme", "legacy", "l7", two)
    assert not await b.acquire("beta", "legacy", "l8", two)


async def test_cooldown_after_repeated_throttling() -> None:
    state = Clock()
    b = ShadowBudget(state, GlobalBudget(), Cooldown(throttles=3, window_s=60, pause_s=300))
    for dt in (0, 10):
        state.t += dt
        await b.throttled("legacy")
    assert not await b.cooling("legacy")
    state.t += 10
    await b.throttled("legacy")
    assert await b.cooling("legacy") and not await b.cooling("gradium")
    state.t += 299
    assert await b.cooling("legacy")
    state.t += 2
    assert not await b.cooling("legacy")
    for _ in range(3):  # throttles spread wider than the window never pause
        state.t += 70
        await b.throttled("gradium")
    assert not await b.cooling("gradium")


async def test_a_leg_reserves_in_steps_and_gives_back_what_it_did_not_use() -> None:
    from gateway.traffic.budget import LegAccount

    state = Clock()
    b = ShadowBudget(state, GlobalBudget(tts_chars_per_day=700), Cooldown())
    leg = LegAccount(b, "acme", "legacy", "leg-1", Budget(tts_chars_per_day=1000, max_concurrent=1))
    assert await leg.admit() is None
    assert await LegAccount(b, "acme", "legacy", "leg-2", Budget(max_concurrent=1)).admit() == "dropped_concurrency"
    for _ in range(3):
        assert await leg.charge("tts_chars", 10)  # one reservation of 500 covers the three
    assert leg.reserved["tts_chars"] == 500 and await b.spent("acme", "legacy", "tts_chars") == 500
    assert await leg.charge("tts_chars", 480)  # past 500: a step of 500 would pass the global 700, 10 fits
    assert leg.reserved["tts_chars"] == 510
    assert not await leg.charge("tts_chars", 200)  # refused: nothing counted
    await leg.settle(throttled=False)
    assert await b.spent("acme", "legacy", "tts_chars") == 510 == leg.cost["tts_chars"]
    assert await LegAccount(b, "acme", "legacy", "leg-3", Budget(max_concurrent=1)).admit() is None  # place freed


async def test_upload_seconds_from_the_query_the_container_or_the_size() -> None:
    from gateway.traffic.stt_cost import upload_seconds
    from tests.emulator.helpers import wav_bytes

    raw = bytes(16000)  # one second of 8 kHz 16-bit mono, as Deepgram's query describes it
    assert await upload_seconds(raw, "audio/l16", {"encoding": "linear16", "sample_rate": "8000"}) == 1.0
    assert await upload_seconds(raw, "audio/mulaw", {"encoding": "mulaw", "sample_rate": "8000",
                                                     "channels": "2"}) == 1.0
    wav = wav_bytes("one two three", 24000)  # the container says how long it is
    pcm_s = (len(wav) - 44) / 48000
    assert abs(await upload_seconds(wav, "audio/wav", {}) - pcm_s) < 0.05
    assert await upload_seconds(raw, "multipart/form-data; boundary=x", {}) == 0.5  # 16 kHz 16-bit mono
    assert await upload_seconds(b"not audio", "audio/mpeg", {"encoding": "opus"}) == 9 / 32000


async def test_a_vendors_throttling_pauses_shadows_to_that_vendor_only() -> None:
    from gateway.traffic.budget import LegAccount

    state = Clock()
    b = ShadowBudget(state, GlobalBudget(), Cooldown(throttles=1, window_s=60, pause_s=300))
    caps = Budget(max_concurrent=4)
    eleven = LegAccount(b, "acme", "legacy", "leg-1", caps, vendor="elevenlabs")
    assert await eleven.admit() is None
    await eleven.settle(throttled=True)  # ElevenLabs said 429
    assert await LegAccount(b, "acme", "legacy", "leg-2", caps, vendor="elevenlabs").admit() == "cooldown"
    assert await LegAccount(b, "acme", "legacy", "leg-3", caps, vendor="deepgram").admit() is None
    assert await LegAccount(b, "acme", "gradium", "leg-4", caps, vendor="elevenlabs").admit() is None
