"""Shared state in Redis (redis-py asyncio): `SET key 1 NX PX ttl` claims, capped `INCRBY` counters.

Every command has a deadline (`state.timeout_s`); any Redis failure becomes `StateUnavailable`, so
callers fail closed. Keys are `state.key_prefix` + the caller's key (e.g. `gw:tok:<jti>`).
"""

from __future__ import annotations

import math

from gateway.state.base import StateUnavailable

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - exercised by a test that hides the package
    aioredis = None  # type: ignore[assignment]
    RedisError = Exception  # type: ignore[assignment,misc]

# Atomic: refuse past the cap, then add and (re)arm the expiry in one step.
_ADD = """
local value = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
if ARGV[2] ~= '' and value > tonumber(ARGV[2]) then return nil end
redis.call('SET', KEYS[1], value, 'KEEPTTL')
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return value
"""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisState:
    def __init__(self, url: str, *, prefix: str = "gw:", timeout_s: float = 0.5) -> None:
        if aioredis is None:
            raise RuntimeError("state.redis_url needs the redis package: pip install 'gradium-gateway[redis]'")
        self.prefix = prefix
        self.url = url
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self._add = self._redis.register_script(_ADD)

    async def claim(self, key: str, ttl_s: float) -> bool:
        try:
            return bool(await self._redis.set(self.prefix + key, 1, nx=True, px=_ms(ttl_s)))
        except (RedisError, OSError, TimeoutError) as exc:
            raise StateUnavailable(f"Redis: {type(exc).__name__}") from exc

    async def add(self, key: str, amount: int, *, cap: int | None = None, ttl_s: float | None = None) -> int | None:
        args = [amount, "" if cap is None else cap, "" if ttl_s is None else _ms(ttl_s)]
        try:
            value = await self._add(keys=[self.prefix + key], args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StateUnavailable(f"Redis: {type(exc).__name__}") from exc
        return None if value is None else int(value)

    async def get(self, key: str) -> int:
        try:
            value = await self._redis.get(self.prefix + key)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StateUnavailable(f"Redis: {type(exc).__name__}") from exc
        return int(value) if value is not None else 0

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
