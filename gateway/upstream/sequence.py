"""Several Gradium TTS requests read as one (`gradium.segments`: ElevenLabs text-to-dialogue).

Each segment is its own Gradium request (its own voice), spoken in order. The next one is opened as
soon as the current one is ready, so its handshake and first audio overlap the current one's audio;
its messages wait on its socket until the current one has ended. The caller sees one stream: the
first `ready`, every segment's `audio`/`text` with times moved on by the audio already spoken, a
`{"type": "segment", "index": i, "start_s": t, ...}` marker where each segment starts (with the
segment's extra fields, e.g. the voice the client named), and one `end_of_stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from gateway.upstream import protocol
from gateway.upstream.gradium import GradiumClient, GradiumStream, Kind
from gateway.upstream.protocol import Message


class SequenceStream(GradiumStream):
    def __init__(self, client: GradiumClient, kind: Kind, api_key: str, setup: Message,
                 segments: list[dict[str, Any]]) -> None:
        self.client = client
        self.kind = kind
        self.api_key = api_key
        self.setup = setup
        self.segments = segments
        self.index = 0
        self.offset = 0.0  # audio time at which the current segment starts
        self.end = 0.0  # furthest time seen so far
        self.current: GradiumStream | None = None
        self.upcoming: asyncio.Task[GradiumStream] | None = None
        self.pending: deque[Message] = deque()
        self.ended = False

    async def _open(self, i: int) -> GradiumStream:
        seg = self.segments[i]
        stream = await self.client.open_ws(self.kind, {**self.setup, **(seg.get("setup") or {})}, self.api_key)
        try:
            await stream.send(protocol.text(seg["text"]))
            await stream.send(protocol.end_of_stream())
        except BaseException:
            await stream.close()
            raise
        return stream

    def _marker(self) -> Message:
        extra = {k: v for k, v in self.segments[self.index].items() if k not in ("text", "setup")}
        return {**extra, "type": protocol.SEGMENT, "index": self.index, "start_s": round(self.offset, 4)}

    async def start(self) -> None:
        self.current = await self._open(0)

    async def send(self, msg: Message) -> None:  # pragma: no cover - all input goes up front
        raise NotImplementedError

    async def recv(self) -> Message | None:
        while True:
            if self.pending:
                return self.pending.popleft()
            if self.ended or self.current is None:
                return None
            msg = await self.current.recv()
            if msg is None:
                self.ended = True
                return None
            mtype = msg.get("type")
            if mtype == protocol.READY:
                if self.index == 0:
                    self.request_id = self.current.request_id
                    self.pending.append(self._marker())
                if self.upcoming is None and self.index + 1 < len(self.segments):
                    self.upcoming = asyncio.create_task(self._open(self.index + 1))
                if self.index == 0:
                    return msg
                continue
            if mtype == protocol.END_OF_STREAM:
                if self.index + 1 >= len(self.segments):
                    self.ended = True
                    return msg
                await self.current.close()
                task, self.current, self.upcoming = self.upcoming, None, None
                self.current = await self._take_upcoming(task)
                self.index += 1
                self.offset = self.end
                self.pending.append(self._marker())
                continue
            if self.offset and ("start_s" in msg or "stop_s" in msg):
                msg = dict(msg)
                for k in ("start_s", "stop_s"):
                    if isinstance(msg.get(k), int | float):
                        msg[k] = round(msg[k] + self.offset, 4)
            for k in ("stop_s", "start_s"):
                if isinstance(msg.get(k), int | float):
                    self.end = max(self.end, float(msg[k]))
            return msg

    async def _take_upcoming(self, task: asyncio.Task[GradiumStream] | None) -> GradiumStream:
        if task is None:
            return await self._open(self.index + 1)
        return await task

    async def close(self) -> None:
        if self.upcoming is not None:
            self.upcoming.cancel()
            with contextlib.suppress(BaseException):
                stream = await self.upcoming
                await stream.close()
            self.upcoming = None
        if self.current is not None:
            await self.current.close()
            self.current = None
