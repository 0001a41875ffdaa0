"""Continuation ids remembered fleet-wide are written in the background; none of those writes outlives the app."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.traffic.stitching import Stitching


class SlowState:
    """Shared state whose writes take `delay_s` (a Redis that answers late, or never)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.claimed: list[str] = []

    async def claim(self, key: str, ttl_s: float) -> Any:
        await asyncio.sleep(self.delay_s)
        self.claimed.append(key)
        return True


async def test_close_lets_quick_writes_finish() -> None:
    state = SlowState(0.01)
    s = Stitching(shared=state)  # type: ignore[arg-type]
    s.remember("req-1", "legacy")
    await s.close()
    assert state.claimed == ["stitch:legacy:req-1"]


async def test_close_cancels_a_write_that_does_not_end() -> None:
    state = SlowState(3600)
    s = Stitching(shared=state)  # type: ignore[arg-type]
    s.remember("req-1", "gradium")
    (task,) = s._writes
    await s.close(timeout_s=0.05)
    assert task.cancelled() and not state.claimed
