"""Pick the shared-state implementation from `state:` settings."""

from __future__ import annotations

from aiohttp import web

from gateway.config import StateSettings
from gateway.state.base import SharedState
from gateway.state.memory import MemoryState

# Claims and counters shared by every worker and replica (the traffic engine's shadow budgets, caps).
SHARED_STATE = web.AppKey("shared_state", SharedState)  # type: ignore[type-abstract]


def open_state(settings: StateSettings) -> SharedState:
    if settings.redis_url is None:
        return MemoryState()
    from gateway.state.redis_store import RedisState

    return RedisState(settings.redis_url, prefix=settings.key_prefix, timeout_s=settings.timeout_s)
