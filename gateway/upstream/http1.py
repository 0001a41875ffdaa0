"""HTTP/1.1 framing for the REST passthrough's relay (RFC 9112), without any I/O: the request head, the
answer's head and the answer's body framing. `relay.py` moves the bytes.

Only what a relay needs: header names and values stay as they were (a request's as the client sent them,
an answer's as the vendor did), nothing is decompressed, trailers are dropped, chunk extensions ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_HEAD = 64 * 1024  # an answer's status line and headers
MAX_LINE = 8 * 1024  # a chunk-size or trailer line
NONE, LENGTH, CHUNKED, CLOSE = range(4)  # how an answer's body ends: no body, Content-Length, last chunk, close
_NO_BODY_STATUS = frozenset({204, 304})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,18}")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 §5.6.2)
_SIZE, _DATA_END, _TRAILER = range(3)  # where a chunked body is: a size line, a chunk's CRLF, the trailer


class Malformed(ValueError):
    """The vendor's answer is not HTTP/1.1 as RFC 9112 has it."""


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


@dataclass(slots=True)
class Head:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    framing: int  # NONE, LENGTH, CHUNKED or CLOSE
    length: int  # LENGTH's byte count
    keep_alive: bool  # the connection may carry another request once this answer is whole


def split_head(buf: bytes) -> tuple[bytes, bytes] | None:
    """(head, what follows it) once `buf` holds a whole head, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise Malformed("The vendor's answer head is too long")
        return None
    return buf[:end], buf[end + 4:]


def parse_head(head: bytes, method: str) -> Head:
    """An answer's head (without its blank line) to the request `method` (HEAD: never a body)."""
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise Malformed("The vendor's answer is not HTTP/1.1")
    headers: list[tuple[str, str]] = []
    length = te = conn = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):  # an obs-fold line too (RFC 9112 §5.2)
            raise Malformed("The vendor sent a malformed header")
        value = value.strip(" \t")
        headers.append((name, value))
        low = name.lower()
        if low == "content-length":
            if (length is not None and length != value) or not _DIGITS.fullmatch(value):
                raise Malformed("The vendor sent a bad Content-Length")
            length = value
        elif low == "transfer-encoding":
            te = value if te is None else f"{te}, {value}"
        elif low == "connection":
            conn = value if conn is None else f"{conn}, {value}"
    status = int(code)
    tokens = conn.lower() if conn else ""
    keep_alive = (version == "HTTP/1.1" and "close" not in tokens) or "keep-alive" in tokens
    size = 0
    if method == "HEAD" or status < 200 or status in _NO_BODY_STATUS:
        framing = NONE
        keep_alive = keep_alive and status != 101
    elif te is not None:  # RFC 9112 §6.3: chunked last, else the body runs to the close
        framing = CHUNKED if te.lower().rstrip().endswith("chunked") else CLOSE
        keep_alive = keep_alive and length is None
    elif length is not None:
        size = int(length)
        framing = LENGTH if size else NONE
    else:
        framing = CLOSE
    return Head(status, reason, headers, framing, size, keep_alive and framing != CLOSE)


class BodyDecoder:
    """An answer's body bytes out of what the connection reads, per the head's framing. `feed` appends the
    body's pieces to `out` (chunk framing removed) and returns their size; `done` once the body ended,
    `extra` if bytes came after its end (the connection then cannot be trusted with another request)."""

    __slots__ = ("done", "extra", "framing", "left", "state", "tail")

    def __init__(self, head: Head) -> None:
        self.framing, self.left = head.framing, head.length
        self.done = head.framing == NONE
        self.extra = False
        self.state = _SIZE
        self.tail = b""  # an incomplete framing line, kept for the next read

    def feed(self, data: bytes, out: list[bytes]) -> int:
        if self.done:
            self.extra = self.extra or bool(data)
            return 0
        if self.framing == LENGTH:
            left = self.left
            if len(data) < left:
                self.left = left - len(data)
                out.append(data)
                return len(data)
            self.left = 0
            self.done = True
            self.extra = len(data) > left
            out.append(data[:left] if self.extra else data)
            return left
        if self.framing == CHUNKED:
            return self._chunked(data, out)
        out.append(data)  # CLOSE: everything until the vendor closes
        return len(data)

    def _chunked(self, data: bytes, out: list[bytes]) -> int:
        if self.tail:
            data, self.tail = self.tail + data, b""
        pos, n, got = 0, len(data), 0
        while pos < n:
            if self.left:  # the rest of a chunk begun in an earlier read
                end = pos + self.left
                if end > n:
                    out.append(data[pos:] if pos else data)
                    self.left = end - n
                    return got + n - pos
                out.append(data[pos:end])
                got += self.left
                self.left, self.state, pos = 0, _DATA_END, end
            elif self.state == _DATA_END:
                if n - pos < 2:
                    break
                if data[pos:pos + 2] != b"\r\n":
                    raise Malformed("The vendor's chunked body is malformed")
                pos += 2
                self.state = _SIZE
            else:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    break
                line, pos = data[pos:eol], eol + 2
                if self.state == _TRAILER:
                    if not line:  # the trailer's end: the body is whole
                        self.done, self.extra = True, pos < n
                        return got
                    continue
                if not _HEX.fullmatch(line):
                    line = line.partition(b";")[0].strip()  # chunk extensions are ignored
                    if not _HEX.fullmatch(line):
                        raise Malformed("The vendor's chunked body is malformed")
                size = int(line, 16)
                end = pos + size
                if not size:
                    self.state = _TRAILER
                elif end + 2 <= n and data[end:end + 2] == b"\r\n":  # the whole chunk is here (most reads)
                    out.append(data[pos:end])
                    got += size
                    pos = end + 2
                else:
                    self.left = size
        if pos < n:
            if n - pos > MAX_LINE:
                raise Malformed("The vendor's chunked body is malformed")
            self.tail = data[pos:]
        return got
