"""A raw TCP vendor whose answers a test scripts byte for byte, and a client of the relay for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from multidict import CIMultiDict

from gateway.upstream.relay import RelayPool

HANG_GUARD_S = 30  # only stops a test that would otherwise hang; nothing is asserted about time
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def vendor(script: Script) -> AsyncIterator[tuple[str, list[asyncio.StreamReader]]]:
    """A raw TCP vendor: `script(reader, writer, n)` serves its n-th connection; yields its base URL and the
    connections' readers (to see which the gateway closed)."""
    conns: list[asyncio.StreamReader] = []
    writers: list[asyncio.StreamWriter] = []
    tasks: list[asyncio.Task[object]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(reader)
        writers.append(writer)
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        # EOFError: the gateway closed while a request was read; CancelledError: the test is over (below)
        with contextlib.suppress(ConnectionError, EOFError, asyncio.CancelledError):
            await script(reader, writer, len(conns) - 1)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", conns
    finally:
        server.close()
        for w in writers:
            w.close()
        for t in tasks:  # a script still waiting (a silent vendor) ends with the test, not at the loop's close
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


async def fetch(pool: RelayPool, url: str, method: str = "GET", body: bytes | None = None,
                read_timeout_s: float = 10.0) -> tuple[int, bytes]:
    conn = await pool.request(method, url, CIMultiDict(), body, ssl_opt=True, connect_timeout_s=5,
                              read_timeout_s=read_timeout_s)
    try:
        got = []
        while chunk := await conn.read():
            got.append(chunk)
        return conn.status, b"".join(got)
    finally:
        conn.release()


def closed(r: asyncio.StreamReader) -> bool:
    """The gateway closed that connection (the vendor saw its end)."""
    return r._eof  # type: ignore[attr-defined]  # what the script left unread does not matter
