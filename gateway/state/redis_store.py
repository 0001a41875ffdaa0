"""Shared state in Redis (redis-py asyncio): `SET key 1 NX PX ttl` claims, capped counters (one Lua script
over every counter of a charge), leases as sorted sets of members scored by their expiry (server time).

Every command has a deadline (`state.timeout_s`); any Redis failure becomes `StateUnavailable`, so
callers fail closed. Keys are `state.key_prefix` + the caller's key (e.g. `gw:tok:<jti>`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Sequence

from gateway.state.base import SingleAdd, StateUnavailable

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - exercised by a test that hides the package
    aioredis = None  # type: ignore[assignment]
    RedisError = Exception  # type: ignore[assignment,misc]

# Atomic over all KEYS: refuse if one would pass its cap (ARGV[3..], '' = none), else add to every one and
# (re)arm the expiry. Values are returned as strings: Lua numbers would be truncated to integers.
_ADD = """
local amount = tonumber(ARGV[1])
local values = {}
for i, key in ipairs(KEYS) do
  values[i] = tonumber(redis.call('GET', key) or '0') + amount
  local cap = ARGV[i + 2]
  if amount > 0 and cap ~= '' and values[i] > tonumber(cap) then return nil end
end
for i, key in ipairs(KEYS) do
  values[i] = redis.call('INCRBYFLOAT', key, ARGV[1])
  if ARGV[2] ~= '' then redis.call('PEXPIRE', key, ARGV[2]) end
end
return values
"""

# Leases: expired members pruned by the server's clock (replicas' clocks never matter), caps checked on
# every set (ARGV[3..]), then the member (re)scored with its new expiry in every set.
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local cap = ARGV[i + 2]
  if cap ~= '' and not redis.call('ZSCORE', key, ARGV[1]) and redis.call('ZCARD', key) >= tonumber(cap) then
    return nil
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', key, ARGV[2])
end
return redis.call('ZCARD', KEYS[1])
"""

def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


@contextlib.asynccontextmanager
async def _failing() -> AsyncIterator[None]:
    """Any Redis failure becomes `StateUnavailable` (callers fail closed)."""
    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise StateUnavailable(f"Redis: {type(exc).__name__}") from exc


class RedisState(SingleAdd):
    def __init__(self, url: str, *, prefix: str = "gw:", timeout_s: float = 0.5) -> None:
        if aioredis is None:
            raise RuntimeError("state.redis_url needs the redis package: pip install 'gradium-gateway[redis]'")
        self.prefix = prefix
        self.url = url
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self._add = self._redis.register_script(_ADD)
        self._lease = self._redis.register_script(_LEASE)

    async def claim(self, key: str, ttl_s: float) -> bool:
        async with _failing():
            claimed = await self._redis.set(self.prefix + key, 1, nx=True, px=_ms(ttl_s))
        return bool(claimed)

    async def add_all(self, keys: Sequence[str], amount: float, caps: Sequence[float | None],
                      ttl_s: float | None = None) -> list[float] | None:
        args = [amount, "" if ttl_s is None else _ms(ttl_s), *("" if c is None else c for c in caps)]
        async with _failing():
            values = await self._add(keys=[self.prefix + k for k in keys], args=args)
        return None if values is None else [float(v) for v in values]

    async def lease(self, keys: Sequence[str], member: str, ttl_s: float,
                    caps: Sequence[int | None] | None = None) -> int | None:
        args = [member, _ms(ttl_s), *("" if c is None else c for c in caps or [None] * len(keys))]
        async with _failing():
            held = await self._lease(keys=[self.prefix + k for k in keys], args=args)
        return None if held is None else int(held)

    async def unlease(self, keys: Sequence[str], member: str) -> None:
        async with _failing(), self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(self.prefix + key, member)
            await pipe.execute()

    async def get(self, key: str) -> float:
        async with _failing():
            value = await self._redis.get(self.prefix + key)
        return float(value) if value is not None else 0

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
