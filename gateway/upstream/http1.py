"""HTTP/1.1 for the REST passthrough's relay (RFC 9112), without any I/O: the request head is written here,
the vendor's answer is parsed by llhttp (`httptools`, the parser of uvloop's authors, also Node's) and only
what a relay needs is kept. `relay_conn.py` moves the bytes.

Header names and values stay as they were (a request's as the client sent them, an answer's as the vendor
did, less the whitespace around a value), nothing is decompressed, trailers are dropped, chunk extensions
ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

import httptools

MAX_HEAD = 64 * 1024  # bytes before an answer's head is whole (llhttp itself has no bound)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def request_head(method: str, target: str, host: str, headers: Iterable[tuple[str, str]],
                 body: bytes | None, streamed: bool) -> tuple[bytes, bool]:
    """The head of `method target` with `headers` as given, plus `Host` and the body's framing if `headers`
    has none (`Content-Length` for a body in memory and for an empty POST/PUT/PATCH, chunked for a streamed
    body of unknown length); and whether the body goes chunked. A line break inside a value raises: a
    header is never split into two."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    has_length = False
    for name, value in headers:
        lines.append(f"{name}: {value}")
        if not has_length and len(name) == 14 and name.lower() == "content-length":
            has_length = True
    chunked = streamed and not has_length
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif not has_length and not streamed and (body or method in _BODY_METHODS):
        lines.append(f"Content-Length: {len(body) if body else 0}")
    text = "\r\n".join(lines)
    breaks = len(lines) - 1
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise ValueError("a line break inside a request line or header")
    return (text + "\r\n\r\n").encode("utf-8", "surrogateescape"), chunked


class Malformed(ValueError):
    """The vendor's answer is not HTTP/1.1 as RFC 9112 (and llhttp, strict) has it."""


class _Stop(Exception):
    """Raised in a callback to stop llhttp where it is: httptools has no pause."""


class Answer:
    """The vendor's answer to one request, fed as its bytes arrive: interim 1xx answers are skipped; `status`,
    `reason` and `headers` are the final answer's once `head_done`; the body's bytes are appended to `pieces`
    (chunk framing removed; `received` counts them); `done` once the body ended; `extra` if bytes came after
    its end (the connection then cannot be trusted with another request); `keep_alive` if neither side asked
    to close and the body's end is not the close. HEAD, 1xx, 204 and 304 answers have no body."""

    __slots__ = ("_head", "_names", "_parser", "_reason", "_seen", "done", "extra", "head_done", "headers",
                 "keep_alive", "pieces", "reason", "received", "status")

    def __init__(self, method: str, pieces: list[bytes]) -> None:
        self.status, self.reason, self._reason = 0, "", b""
        self.headers: list[tuple[str, str]] = []
        self.keep_alive = self.head_done = self.done = self.extra = False
        self.pieces = pieces
        self.received = 0
        self._head = method == "HEAD"
        self._seen = 0  # bytes fed before the head was whole
        self._names = 0  # the head's header bytes (the read that ends the head may bring a body too)
        self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> None:
        """Raises `Malformed` for what llhttp refuses (no leniency: e.g. a Content-Length next to chunked)."""
        if self.done:
            self.extra = True
            return
        try:
            if self._head and not self.head_done:
                self._feed_lines(data)
            else:
                self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # a 101 with `Upgrade`: what follows is not HTTP any more
            self.done = True
        except httptools.HttpParserError as exc:
            if not self.done:
                why = "its head is too long" if self._names > MAX_HEAD else exc
                raise Malformed(f"The vendor's answer is not HTTP/1.1 ({why})") from None
            self.extra = True  # bytes after the answer (or after its `Connection: close`), not a next answer
        if not self.head_done:
            self._seen += len(data)
            if self._seen > MAX_HEAD:
                raise Malformed("The vendor's answer is not HTTP/1.1 (its head is too long)")

    def _feed_lines(self, data: bytes) -> None:
        """An answer to HEAD has no body whatever its head says, but llhttp learns that only from a return value of
        `on_headers_complete` that httptools does not pass on (MagicStack/httptools#47): such a head goes in line by
        line and the callback stops llhttp at its end, so that what follows it is known to be extra."""
        start, n = 0, len(data)
        while start < n:
            end = data.find(b"\n", start) + 1 or n
            try:
                self._parser.feed_data(data[start:end] if start or end < n else data)
            except httptools.HttpParserCallbackError as exc:
                if not isinstance(exc.__context__, _Stop):
                    raise
                self.extra = end < n
                return
            start = end

    def eof(self) -> bool:
        """The vendor closed the connection: whether that ended the body (one framed by neither a Content-Length
        nor chunks ends at the close, RFC 9112 §6.3)."""
        if self.head_done and not self.done:
            for name, value in self.headers:
                low = name.lower()
                if low == "content-length" or (low == "transfer-encoding" and value.lower().endswith("chunked")):
                    return False
            self.done = True
        return self.done

    # -- llhttp's callbacks -----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            raise _Stop  # bytes after the answer: not read as a next one, nobody asked for it
        self.headers, self._reason = [], b""  # an interim answer's are dropped

    def on_status(self, reason: bytes) -> None:
        self._reason += reason  # in pieces when the reads cut it

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # trailers are dropped
            self._names += len(name) + len(value)
            if self._names > MAX_HEAD:
                raise _Stop  # reported as malformed: the head is too long
            self.headers.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape").rstrip(" \t")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200 and status != 101:
            return  # an interim answer (100 Continue, 103 Early Hints): the final one follows
        self.status, self.reason = status, self._reason.decode("utf-8", "surrogateescape")
        self.keep_alive = status != 101 and self._parser.should_keep_alive()
        self.head_done = True
        if self._head:
            self.done = True
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)
        self.received += len(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.done = True
