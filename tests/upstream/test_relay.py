"""The REST passthrough's vendor client (gateway/upstream/relay.py) against scripted vendors on loopback:
keep-alive reuse, what may and may not be sent again, flow control, timeouts, and no socket left open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict

from gateway.upstream.relay import RelayError, RelayPool
from tests.upstream.raw_vendor import HANG_GUARD_S, closed, fetch, read_request, vendor


async def test_one_connection_carries_requests_one_after_the_other() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none",
                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",  # to a HEAD: no body follows
                   b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfive"]
        for answer in answers:
            await read_request(reader)
            writer.write(answer)

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, conns):
        got = [await fetch(pool, url + "/a"), await fetch(pool, url + "/b", "POST", b"x"),
               await fetch(pool, url + "/c", "HEAD"), await fetch(pool, url + "/d", "DELETE"),
               await fetch(pool, url + "/e")]
        assert got == [(200, b"one"), (200, b"two"), (200, b""), (204, b""), (200, b"five")]
        assert len(conns) == 1
        await pool.close()
        await asyncio.sleep(0.05)
        assert closed(conns[0])


@pytest.mark.parametrize(("method", "resent"), [("GET", True), ("POST", False)])
async def test_a_reused_connection_closed_before_answering_resends_only_idempotent_requests(
        method: str, resent: bool) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await read_request(reader)  # the next request on the kept connection: closed unanswered
        writer.transport.abort()

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, conns):
        assert await fetch(pool, url + "/", method, b"{}" if method == "POST" else None) == (200, b"ok")
        if resent:
            assert await fetch(pool, url + "/", method) == (200, b"ok")
            assert len(conns) == 2
        else:
            with pytest.raises(RelayError) as e:
                await fetch(pool, url + "/", method, b"{}")
            assert e.value.kind == "reset" and len(conns) == 1
        await pool.close()


async def test_an_answer_that_ends_with_the_close_is_whole_and_its_connection_not_kept() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the close")
        await writer.drain()
        writer.close()

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, conns):
        assert await fetch(pool, url + "/") == (200, b"until the close")
        assert await fetch(pool, url + "/") == (200, b"until the close")
        assert len(conns) == 2


async def test_a_silent_vendor_is_a_timeout_before_and_during_the_answer() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await asyncio.sleep(HANG_GUARD_S)

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, conns):
        with pytest.raises(RelayError) as e:
            await fetch(pool, url + "/", read_timeout_s=0.3)
        assert e.value.kind == "timeout"
        conn = await pool.request("GET", url + "/", CIMultiDict(), None, ssl_opt=True, connect_timeout_s=5,
                                  read_timeout_s=0.3)
        assert await conn.read() == b"abc"
        with pytest.raises(RelayError) as e:
            await conn.read()
        assert e.value.kind == "timeout"
        conn.release()
        await asyncio.sleep(0.05)
        assert all(closed(w) for w in conns)  # neither half-answered connection is kept


async def test_a_vendor_is_paused_while_the_client_does_not_read() -> None:
    sent = asyncio.Event()
    size = 8 * 1024 * 1024

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()  # blocks once the gateway stops reading
        sent.set()

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, _):
        conn = await pool.request("GET", url + "/", CIMultiDict(), None, ssl_opt=True, connect_timeout_s=5,
                                  read_timeout_s=10)
        await asyncio.sleep(0.3)
        assert not sent.is_set() and conn._buffered < size // 2  # held back, not all buffered in the gateway
        n = 0
        while chunk := await conn.read():
            n += len(chunk)
        assert n == size and sent.is_set()
        conn.release()
        await pool.close()


async def test_a_streamed_body_goes_chunked_and_an_early_answer_closes_the_connection() -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        seen.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\n\r\nno")
        seen.append(await reader.readuntil(b"\r\n\r\n"))  # the next one, on the kept connection
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\n\r\nno")  # before its upload ends
        await asyncio.sleep(HANG_GUARD_S)

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b""
        yield b"defgh"

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, conns):
        conn = await pool.request("POST", url + "/up", CIMultiDict(), body(), ssl_opt=True, connect_timeout_s=5,
                                  read_timeout_s=10)
        assert conn.status == 413 and await conn.read() == b"no"
        conn.release()
        assert b"Transfer-Encoding: chunked" in seen[0] and seen[1] == b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"

        async def endless() -> AsyncIterator[bytes]:
            while True:
                yield b"x"
                await asyncio.sleep(0.01)

        seen.clear()
        conn = await pool.request("POST", url + "/up", CIMultiDict(), endless(), ssl_opt=True,
                                  connect_timeout_s=5, read_timeout_s=10)
        assert await conn.read() == b"no"
        conn.release()  # answered before the upload ended: that connection can carry nothing else
        await asyncio.sleep(0.05)
        assert len(conns) == 1 and closed(conns[0])
        await pool.close()


async def test_unreachable_and_untrusted_vendors_are_told_apart(tls_files: dict) -> None:
    pool = RelayPool()
    with pytest.raises(RelayError) as e:
        await fetch(pool, "http://127.0.0.1:9/")
    assert e.value.kind == "connect"
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls_files["cert"]), str(tls_files["key"]))
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(RelayError) as e:
            await fetch(pool, f"https://127.0.0.1:{port}/")  # the test CA is not trusted by default
        assert e.value.kind == "tls"
    finally:
        server.close()


async def test_a_vendor_name_is_looked_up_once_for_a_burst_of_new_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    lookups: list[str] = []
    real = loop.getaddrinfo

    async def counting(host: str, *args: object, **kwargs: object) -> object:
        lookups.append(host)
        return await real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "getaddrinfo", counting)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await asyncio.sleep(0.05)  # the burst's connections are all open at once
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, conns):
        named = url.replace("127.0.0.1", "localhost")  # may name ::1 first, where nothing listens: the next is tried
        got = await asyncio.gather(*(fetch(pool, named + "/") for _ in range(4)))
        assert got == [(200, b"ok")] * 4 and len(conns) == 4
        assert lookups.count("localhost") == 1
        await pool.close()


async def test_a_request_that_ends_after_the_pool_closed_keeps_nothing_open() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await asyncio.sleep(0.1)
        writer.write(b"cd")

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, conns):
        conn = await pool.request("GET", url + "/", CIMultiDict(), None, ssl_opt=True, connect_timeout_s=5,
                                  read_timeout_s=10)
        await pool.close()  # the gateway shuts down while the answer is still coming
        assert await conn.read() == b"ab" and await conn.read() == b"cd" and await conn.read() == b""
        conn.release()
        await asyncio.sleep(0.05)
        assert closed(conns[0])
