"""A raw HTTP/1.x client for requests no well-behaved client library would send (control characters,
non-UTF-8 bytes, HTTP/1.0, broken framing), with a deadline on every read."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    version: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


async def raw_request(host: str, port: int, head: bytes, body: bytes = b"", timeout: float = 10.0) -> RawResponse:
    """Send `head` (request line + headers, without the blank line) and `body`; read until the server
    closes (the request says `Connection: close`) or `timeout`, whichever first."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        if b"connection:" not in head.lower():
            head += b"\r\nConnection: close"
        writer.write(head + b"\r\n\r\n" + body)
        await writer.drain()
        data = b""
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data += chunk
                if _complete(data):
                    break
    finally:
        writer.close()
    return parse_response(data)


def _complete(data: bytes) -> bool:
    """A whole response is in (the socket may stay open: keep-alive, or upgraded)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    if head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or b"0")
        if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            return body.endswith(b"0\r\n\r\n")
    return False


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return RawResponse(version, int(status), headers, body)


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out
