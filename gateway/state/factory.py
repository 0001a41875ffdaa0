"""Pick the shared-state implementation from `state:` settings."""

from __future__ import annotations

from gateway.config import StateSettings
from gateway.state.base import SharedState
from gateway.state.memory import MemoryState


def open_state(settings: StateSettings) -> SharedState:
    if settings.redis_url is None:
        return MemoryState()
    from gateway.state.redis_store import RedisState

    return RedisState(settings.redis_url, prefix=settings.key_prefix, timeout_s=settings.timeout_s)
