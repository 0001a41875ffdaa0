"""Which side issued an ElevenLabs request id: continuation ids (`previous_request_ids`) go back to that side.

Every answer's id is remembered in a bounded in-process map; with `state.redis_url` also fleet-wide as
`stitch:<side>:<id>` for two hours (written in the background: no answer waits for Redis), so a
conversation whose requests land on different replicas still continues on the side that issued its ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import Any

import structlog

from gateway.state.base import SharedState, StateUnavailable
from gateway.traffic.settings import Target

log = structlog.get_logger("gateway")
STITCH_TTL_S = 2 * 3600  # ElevenLabs request ids can be continued for two hours
SIDES: tuple[Target, Target] = ("gradium", "legacy")


class Stitching:
    def __init__(self, shared: SharedState | None = None, size: int = 50_000) -> None:
        self._ids: OrderedDict[str, tuple[Target, float]] = OrderedDict()
        self._size = size
        self.shared = shared
        self._writes: set[asyncio.Task[Any]] = set()

    def remember(self, request_id: str, target: Target) -> None:
        self._ids[request_id] = (target, time.monotonic() + STITCH_TTL_S)
        self._ids.move_to_end(request_id)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)
        if self.shared is not None:
            task = asyncio.create_task(self._share(request_id, target))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _share(self, request_id: str, target: Target) -> None:
        with contextlib.suppress(StateUnavailable):
            await self.shared.claim(f"stitch:{target}:{request_id}", STITCH_TTL_S)  # type: ignore[union-attr]

    async def close(self, timeout_s: float = 1.0) -> None:
        """Shared writes still under way finish (they are one Redis call) or are cancelled: none outlives
        the app."""
        if not self._writes:
            return
        _, late = await asyncio.wait(self._writes, timeout=timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def side_of(self, ids: list[Any]) -> Target | None:
        now = time.monotonic()
        wanted = [i for i in ids if isinstance(i, str) and i]
        sides: set[Target] = set()
        unknown = []
        for i in wanted:
            entry = self._ids.get(i)
            if entry is not None and entry[1] > now:
                sides.add(entry[0])
            else:
                unknown.append(i)
        if unknown and self.shared is not None:
            sides |= await self._shared_sides(unknown)
        if len(sides) > 1:
            log.info("traffic.stitching_mixed")
        return sides.pop() if len(sides) == 1 else None

    async def _shared_sides(self, ids: list[str]) -> set[Target]:
        assert self.shared is not None
        pairs = [(side, i) for i in ids for side in SIDES]
        try:
            found = await asyncio.gather(*(self.shared.get(f"stitch:{side}:{i}") for side, i in pairs))
        except StateUnavailable:
            return set()  # no shared memory right now: the bucket decides
        return {side for (side, _), value in zip(pairs, found, strict=True) if value}
