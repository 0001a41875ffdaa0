"""A time limit on each wait for Gradium's next message of a streamed HTTP answer."""

from __future__ import annotations

import asyncio
import time

from gateway.errors import GatewayError


class ReadDeadline:
    """`gradium.message_timeout_s` for every wait on Gradium's next message of a streamed answer, with one
    timer for the whole stream (re-armed when it fires) rather than one per message: a message costs a
    clock read. Only the waits count, not the writes to a slow client.

    The clock is `time.monotonic` (a C call per message), not the loop's `time()`, a Python-level method
    on asyncio's own loop; the timer is set with `call_later`, so the two clocks never meet."""

    clock = staticmethod(time.monotonic)

    def __init__(self, timeout_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.timeout_s = timeout_s
        self.since: float | None = None  # when the wait under way began
        self.expired = False
        self.handle = self.loop.call_later(timeout_s, self._fire)

    def _fire(self) -> None:
        now = time.monotonic()
        if self.since is not None and now - self.since >= self.timeout_s:
            self.expired = True
            if self.task is not None:
                self.task.cancel()
            return
        since = now if self.since is None else self.since
        self.handle = self.loop.call_later(since + self.timeout_s - now, self._fire)

    def timed_out(self) -> GatewayError:
        """The wait was cut by this deadline (its cancellation is taken back): what to report."""
        if self.task is not None:
            self.task.uncancel()
        return GatewayError("upstream_unavailable", "Gradium did not answer in time")
