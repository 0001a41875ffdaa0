"""Inline delivery: a WebSocket message handled in the callback that parsed it, not by a task woken for it.

aiohttp's parser puts every message it reads on the socket's queue and wakes the task waiting in
`receive()`: a future, a `call_soon`, a task step and the `await` chain back up, ~12 k instructions per
message before any work. A live STT stream takes two per 80 ms frame (the client's audio, Gradium's
`step`). An `Inbox` is aiohttp's own queue with a `sink`: while one is set, each message goes to it as soon
as it is parsed, in the transport's `data_received`, and the waiting task is not woken.

The contract, which keeps messages in order: the sink is set only by the task that reads the socket, right
before it waits in `receive()` with nothing queued. A sink returns None when it took the message, or what
to queue instead (the message itself, or a marker carrying work that must be awaited) after clearing
itself: from then on everything queues, so the task sees it after what the sink queued, and sets the sink
again when it next waits. A sink never raises (it queues a marker that raises in the task instead).
Anything aiohttp itself acts on (close, ping, errors, end of stream) reaches the task as before.

`attach_client` (a Gradium socket, before anything was sent on it) and `InboxResponse` (the client's
socket, at the upgrade) install one; where aiohttp looks different from what this expects, or data came
in before it could be installed, the socket keeps aiohttp's own queue and works as ever, only slower.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from aiohttp import WSMessage, WSMsgType, web

# aiohttp internals used here (none is public API; pyproject's aiohttp range is where they were checked, and
# tests/session/test_fast_paths.py fails on an aiohttp where inline delivery stops engaging):
# - `aiohttp._websocket.reader.WebSocketDataQueue` (subclassed: the parser calls its `feed_data` per message;
#   its `_buffer`, `_protocol`, `is_eof`) and `WebSocketReader(queue, max_msg_size, compress=,
#   decode_text=)` (the parser; `decode_text` from aiohttp 3.14);
# - on a socket: `_reader` (its queue), `_parser` (3.14.4+: keeps the parser alive), `_loop`, and on the server
#   side `_post_start` (overridden), `_compress`, `_max_msg_size`, `_decode_text`;
# - on the connection's protocol: `_payload_parser` (what `data_received` feeds) and, server side,
#   `_message_tail` (bytes read past the 101);
# - `aiohttp.helpers.DEFAULT_CHUNK_SIZE`, the size aiohttp gives its WebSocket queues.
# Where one is missing or looks different, `_swap` returns None and the socket keeps aiohttp's queue.
try:
    from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
    from aiohttp.helpers import DEFAULT_CHUNK_SIZE

    _QueueBase: type = WebSocketDataQueue
except ImportError:  # pragma: no cover - an aiohttp without them: no inline delivery
    WebSocketDataQueue = WebSocketReader = None  # type: ignore[assignment,misc]
    # `Inbox` must still be a class for the module to import (aiohttp 3.10 crashed the gateway's import
    # here), though it is never made: `_swap` gives up first
    _QueueBase = object

Sink = Callable[[Any], Any]  # a parsed message (aiohttp's WSMessage) -> None (taken) or what to queue


class Later:
    """Work a sink left for the socket's task (as a marker message's `data`): awaited there, in order.
    `owner`: whose it is (a pooled socket's next user skips one left by the last)."""

    __slots__ = ("owner", "work")

    def __init__(self, work: Awaitable[None], owner: object = None) -> None:
        self.work: Awaitable[None] | None = work
        self.owner = owner

    def __await__(self) -> Generator[Any, None, None]:
        work, self.work = self.work, None
        assert work is not None
        return work.__await__()

    def drop(self) -> None:
        """Never to be awaited (the session ended with it queued): close its coroutine, which would
        otherwise warn that it was never awaited."""
        work, self.work = self.work, None
        close = getattr(work, "close", None)
        if close is not None:
            close()

    __del__ = drop


def later_message(work: Awaitable[None], owner: object = None) -> WSMessage:
    """The marker a sink queues: aiohttp's `receive` returns it as it is (a type it does not act on)."""
    return WSMessage(WSMsgType.BINARY, Later(work, owner), None)


def inbox_of(ws: Any) -> Inbox | None:
    """The socket's `Inbox`, if it has one."""
    reader = getattr(ws, "_reader", None)
    return reader if isinstance(reader, Inbox) else None


async def raising(exc: BaseException) -> None:
    """What a sink queues for an exception: raised in the socket's task, where reading it would have."""
    raise exc


class Inbox(_QueueBase):  # type: ignore[misc,valid-type]
    """aiohttp's message queue, which hands messages to `sink` while one is set, run in `context` (the
    reading task's: its log fields, e.g. the request id, not those of whoever opened the connection)."""

    __slots__ = ("context", "sink")

    def __init__(self, protocol: Any, limit: int, *, loop: Any) -> None:
        super().__init__(protocol, limit, loop=loop)
        self.sink: Sink | None = None
        self.context: contextvars.Context = contextvars.Context()

    def listen(self, sink: Sink | None, context: contextvars.Context | None = None) -> None:
        """Messages to `sink` from now on (None: to the queue, as aiohttp's); see the module's contract."""
        self.sink = sink
        if context is not None:
            self.context = context

    def feed_data(self, data: Any, size: int) -> None:
        sink = self.sink
        if sink is not None:
            left = self.context.run(sink, data)
            if left is None:
                return
            if left is not data:
                data, size = left, 0
        WebSocketDataQueue.feed_data(self, data, size)


def _swap(ws: Any, protocol: Any, max_msg_size: int, compress: bool, decode_text: bool) -> Inbox | None:
    """Put an `Inbox` (and a parser feeding it) in place of `ws`'s queue and parser, which must be fresh:
    nothing queued, nothing half-parsed (the caller knows no byte was read since they were made)."""
    old = getattr(ws, "_reader", None)
    if (WebSocketDataQueue is None or type(old) is not WebSocketDataQueue or old._buffer or old.is_eof()
            or getattr(protocol, "_payload_parser", None) is None):
        return None
    # the size aiohttp gives every WebSocket queue (client and server), not read back from `old._limit`: the
    # Cython queue shows it only from aiohttp 3.14.4 (before, reading it failed and every socket silently kept
    # aiohttp's queue)
    try:
        inbox = Inbox(protocol, DEFAULT_CHUNK_SIZE, loop=ws._loop)
        parser = WebSocketReader(inbox, max_msg_size, compress=compress, decode_text=decode_text)
    except (AttributeError, TypeError):  # pragma: no cover - another aiohttp's signatures
        return None
    protocol._payload_parser = parser
    ws._reader = inbox
    if hasattr(ws, "_parser"):  # aiohttp keeps its parser alive through the socket (a stalled reader)
        ws._parser = parser
    return inbox


def attach_client(ws: Any, max_msg_size: int, decode_text: bool) -> Inbox | None:
    """An `Inbox` on a client socket `ws_connect` just returned (`max_msg_size` and `decode_text` as given
    to it, no compression), or None: it keeps aiohttp's queue. Call it before any await: `ws_connect` made
    its parser in the same turn of the loop, so the parser has read only what came with the 101, which
    for a server that speaks second (Gradium answers a setup) is nothing."""
    if getattr(ws, "compress", 1):
        return None
    return _swap(ws, getattr(getattr(ws, "_reader", None), "_protocol", None), max_msg_size, False, decode_text)


class InboxResponse(web.WebSocketResponse):
    """A server socket with an `Inbox` (`inbox`, None when it keeps aiohttp's queue): installed as the
    upgrade completes, when no byte of the client's had come in yet (the usual case)."""

    inbox: Inbox | None = None

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        transport_protocol = request.protocol
        fresh = getattr(transport_protocol, "_message_tail", None) == b""  # nothing read after the 101 yet
        super()._post_start(request, protocol, writer)
        if fresh and not self._compress:
            # no loop turn since aiohttp made its parser: it has read nothing, so it can be replaced
            self.inbox = _swap(self, transport_protocol, self._max_msg_size, False,
                               getattr(self, "_decode_text", True))
