"""Shared state: the same behaviour in memory and in a real Redis; Redis down fails closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from gateway.config import StateSettings
from gateway.errors import GatewayError
from gateway.state import MemoryState, SharedState, SharedUsedTokens, StateUnavailable, open_state
from gateway.state.redis_store import RedisState
from tests.fleet.redis_server import RedisServer


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[SharedState]:
    if request.param == "memory":
        s: SharedState = MemoryState()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        s = open_state(StateSettings(redis_url=server.url))
        assert isinstance(s, RedisState)
    yield s
    await s.close()


async def test_a_claim_is_granted_once_until_it_expires(state: SharedState) -> None:
    assert await state.claim("tok:a", 0.3)
    assert not await state.claim("tok:a", 0.3)
    assert await state.claim("tok:b", 0.3)
    await asyncio.sleep(0.4)
    assert await state.claim("tok:a", 0.3)


async def test_concurrent_claims_have_one_winner(state: SharedState) -> None:
    results = await asyncio.gather(*(state.claim("tok:race", 10) for _ in range(20)))
    assert results.count(True) == 1


async def test_counters_refuse_past_the_cap(state: SharedState) -> None:
    assert await state.get("bud:t:legacy:legs:20261130") == 0
    assert await state.add("bud:t:legacy:legs:20261130", 3, cap=5, ttl_s=60) == 3
    assert await state.add("bud:t:legacy:legs:20261130", 3, cap=5, ttl_s=60) is None  # would be 6 > 5
    assert await state.add("bud:t:legacy:legs:20261130", 2, cap=5, ttl_s=60) == 5
    assert await state.get("bud:t:legacy:legs:20261130") == 5
    assert await state.add("n", 1) == 1 and await state.add("n", -1) == 0


async def test_counter_expiry(state: SharedState) -> None:
    assert await state.add("short", 1, ttl_s=0.2) == 1
    await asyncio.sleep(0.35)
    assert await state.get("short") == 0


async def test_single_use_tokens_are_claimed_once(state: SharedState) -> None:
    used = SharedUsedTokens(state)
    assert await used.claim("jti-1", time.time() + 60)
    assert not await used.claim("jti-1", time.time() + 60)


async def test_two_clients_of_one_redis_share_claims(redis_server: RedisServer) -> None:
    a, b = (open_state(StateSettings(redis_url=redis_server.url)) for _ in range(2))
    try:
        assert await a.claim("tok:shared", 10)
        assert not await b.claim("tok:shared", 10)
        assert await a.add("c", 2) == 2 and await b.add("c", 2) == 4
    finally:
        await a.close()
        await b.close()


async def test_redis_down_fails_closed(redis_server: RedisServer) -> None:
    state = open_state(StateSettings(redis_url=redis_server.url, timeout_s=0.3))
    try:
        assert await state.claim("tok:x", 10)
        redis_server.stop()
        with pytest.raises(StateUnavailable):
            await state.claim("tok:y", 10)
        with pytest.raises(StateUnavailable):
            await state.add("c", 1, cap=10)
        with pytest.raises(GatewayError) as err:
            await SharedUsedTokens(state).claim("jti-2", time.time() + 60)
        assert err.value.kind == "unauthorized" and "shared state store is unreachable" in err.value.message
    finally:
        await state.close()


async def test_memory_state_refuses_rather_than_forgets() -> None:
    state = MemoryState(max_keys=2)
    assert await state.claim("a", 60) and await state.claim("b", 60)
    with pytest.raises(StateUnavailable):
        await state.claim("c", 60)
    assert not await state.claim("a", 60)


def test_redis_url_must_be_a_redis_url() -> None:
    with pytest.raises(ValueError, match="redis://"):
        StateSettings(redis_url="http://localhost:6379")


async def test_a_charge_on_several_counters_is_all_or_nothing(state: SharedState) -> None:
    keys = ["bud:acme:legacy:stt_seconds:20261206", "bud:*:legacy:stt_seconds:20261206"]
    assert await state.add_all(keys, 2.5, [10, 3], ttl_s=60) == [2.5, 2.5]
    assert await state.add_all(keys, 1, [10, 3], ttl_s=60) is None  # the second (global) cap: nothing added
    assert [await state.get(k) for k in keys] == [2.5, 2.5]
    assert await state.add_all(keys, -1.5, [10, 3]) == [1.0, 1.0]  # a refund is never refused
    assert await state.add_all(keys, 2, [None, 3]) == [3.0, 3.0]


async def test_leases_are_capped_renewed_and_expire(state: SharedState) -> None:
    sets = ["conc:acme:legacy", "conc:*:legacy"]
    assert await state.lease(sets, "leg-1", 0.4, [2, 3]) == 1
    assert await state.lease(sets, "leg-2", 0.4, [2, 3]) == 2
    assert await state.lease(sets, "leg-3", 0.4, [2, 3]) is None  # the tenant's cap
    assert await state.lease(sets, "leg-1", 0.4, [2, 3]) == 2  # a holder renews within its cap
    assert await state.lease(["conc:beta:legacy", "conc:*:legacy"], "leg-4", 10, [2, 3]) == 1
    assert await state.lease(["conc:beta:legacy", "conc:*:legacy"], "leg-5", 10, [2, 3]) is None  # global 3
    await state.unlease(sets, "leg-2")
    assert await state.lease(["conc:beta:legacy", "conc:*:legacy"], "leg-5", 10, [2, 3]) == 2
    await asyncio.sleep(0.5)  # leg-1 stopped renewing (a crashed replica): its place frees itself
    assert await state.lease(sets, "leg-6", 10, [2, 3]) == 1
    assert await state.lease(["hits"], "a", 10) == 1 and await state.lease(["hits"], "b", 10) == 2  # no cap
