"""How the REST passthrough's relay reads a vendor's answer (gateway/upstream/http1.py, llhttp through
httptools), seen through `RelayPool` against scripted vendors on loopback: where each body ends, which
connections are kept for the next request, answers cut at every byte, bytes after an answer, malformed
answers."""

from __future__ import annotations

import asyncio

import pytest
from multidict import CIMultiDict

from gateway.upstream import http1
from gateway.upstream.relay import RelayError, RelayPool
from tests.upstream.raw_vendor import HANG_GUARD_S, closed, fetch, read_request, vendor

NEXT = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"


async def first_then_next(raw: bytes, method: str, vendor_closes: bool = False) -> tuple[tuple[int, bytes], int]:
    """`raw` answers a `method` request, then a GET asks for more: (the first answer's status and body, how many
    connections the vendor saw: 1 if the first one was kept)."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            req = await read_request(reader)
            writer.write(NEXT if req.startswith(b"GET /next ") else raw)
            await writer.drain()
            if vendor_closes and not req.startswith(b"GET /next "):
                writer.close()
                return

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, conns):
        got = await fetch(pool, url + "/first", method, b"{}" if method == "POST" else None)
        assert await fetch(pool, url + "/next") == (200, b"next")
        await pool.close()
        return got, len(conns)


@pytest.mark.parametrize(("raw", "method", "body", "kept"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "POST", b"hello", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "POST", b"hello", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", b"", True),  # the length a GET would have
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD", b"", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", "DELETE", b"", True),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", "GET", b"", True),
    (b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "POST", b"ok",
     True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", "GET", b"", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na", "GET", b"a", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\na", "GET", b"a", True),
])
async def test_where_an_answer_ends_and_whether_its_connection_is_kept(raw: bytes, method: str, body: bytes,
                                                                       kept: bool) -> None:
    status = int(raw.rsplit(b"HTTP/1.", 1)[1][2:5])  # the final answer's
    assert await first_then_next(raw, method) == ((status, body), 1 if kept else 2)


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\n\r\nuntil the close",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nuntil the close",  # not chunked last: the close ends it
])
async def test_an_answer_framed_by_nothing_ends_at_the_close(raw: bytes) -> None:
    assert await first_then_next(raw, "GET", vendor_closes=True) == ((200, b"until the close"), 2)


async def test_the_status_reason_and_headers_reach_the_relay_as_sent() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 429 Too Many  Requests\r\nRetry-After:  3 \r\nX-Ray: a:b\r\nx-ray: c\r\n"
                     b"Content-Length: 0\r\n\r\n")

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, _):
        conn = await pool.request("GET", url + "/", CIMultiDict(), None, ssl_opt=True, connect_timeout_s=5,
                                  read_timeout_s=10)
        assert (conn.status, conn.reason) == (429, "Too Many  Requests")
        assert conn.headers == [("Retry-After", "3"), ("X-Ray", "a:b"), ("x-ray", "c"), ("Content-Length", "0")]
        conn.release()
        await pool.close()


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n1;ext=1\r\n \r\n0006\r\nworld!\r\n0\r\nTrailer: x\r\n\r\n")
HEAD = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-A: b\r\n\r\n"


@pytest.mark.parametrize(("method", "raw", "body"), [("GET", CHUNKED, b"hello world!"), ("HEAD", HEAD, b"")])
async def test_an_answer_is_the_same_however_the_reads_cut_it(method: str, raw: bytes, body: bytes) -> None:
    """Every cut of the answer in two writes, one request after the other on the one kept connection."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            req = await read_request(reader)
            cut = int(req.split(b" ")[1].rsplit(b"/", 1)[1])
            writer.write(raw[:cut])
            await writer.drain()
            await asyncio.sleep(0.002)  # most often its own read; either way the answer must be the same
            writer.write(raw[cut:])

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, conns):
        for cut in range(1, len(raw)):
            assert await fetch(pool, f"{url}/cut/{cut}", method) == (200, body), cut
        assert len(conns) == 1
        await pool.close()


@pytest.mark.parametrize(("raw", "method", "body"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n\r\n", "GET", b"abc"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX", "GET", b""),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "HEAD", b""),  # a body to HEAD is not the next answer
])
async def test_bytes_after_an_answer_keep_its_connection_from_the_next_request(raw: bytes, method: str,
                                                                                body: bytes) -> None:
    assert await first_then_next(raw, method) == ((200, body), 2)


@pytest.mark.parametrize("raw", [
    b"HTTP/2 200 OK\r\n\r\n", b"HTTP/1.1 20 OK\r\n\r\n", b"ICY 200 OK\r\n\r\n", b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n", b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",  # smuggling's shape
    b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"y" * http1.MAX_HEAD + b"\r\n\r\n",  # llhttp has no bound
], ids=lambda raw: repr(raw[:40]))
async def test_a_malformed_answer_head_is_a_reset_and_its_connection_closed(raw: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(raw)
        await asyncio.sleep(HANG_GUARD_S)

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, conns):
        with pytest.raises(RelayError) as e:
            await fetch(pool, url + "/")
        assert e.value.kind == "reset"
        await asyncio.sleep(0.05)
        assert closed(conns[0])


@pytest.mark.parametrize("body", [b"x\r\nhello\r\n", b"5\r\nhelloXX", b"5" * 9000 + b"\r\n"])
async def test_a_malformed_chunked_body_breaks_off_the_answer(body: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        await asyncio.sleep(HANG_GUARD_S)

    pool = RelayPool()
    async with asyncio.timeout(HANG_GUARD_S), vendor(script) as (url, _):
        with pytest.raises(RelayError) as e:
            await fetch(pool, url + "/")
        assert e.value.kind == "reset"
        await pool.close()
