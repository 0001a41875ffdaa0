"""HTTP/1.1 framing of the REST passthrough's relay (gateway/upstream/http1.py): request heads, answer heads,
answer bodies however the reads cut them."""

from __future__ import annotations

import pytest

from gateway.upstream import http1


def test_a_request_head_keeps_the_headers_as_given_and_adds_host_and_framing() -> None:
    head, chunked = http1.request_head("POST", "/v1/x?a=%20b", "vendor:8443", [("xi-api-key", "k"), ("X-A", "1 2")],
                                       b'{"t":1}', streamed=False)
    assert not chunked
    assert head == (b"POST /v1/x?a=%20b HTTP/1.1\r\nHost: vendor:8443\r\nxi-api-key: k\r\nX-A: 1 2\r\n"
                    b"Content-Length: 7\r\n\r\n")
    # the client's own Content-Length stays the only one; a streamed body of unknown length goes chunked
    head, chunked = http1.request_head("POST", "/u", "v", [("Content-Length", "9")], None, streamed=True)
    assert not chunked and head.count(b"Content-Length") == 1 and b"Transfer-Encoding" not in head
    head, chunked = http1.request_head("POST", "/u", "v", [], None, streamed=True)
    assert chunked and head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    # no body: a GET says nothing of one, an empty POST says it is empty
    assert b"Content-Length" not in http1.request_head("GET", "/", "v", [], None, streamed=False)[0]
    assert b"Content-Length: 0" in http1.request_head("POST", "/", "v", [], None, streamed=False)[0]


def test_a_line_break_in_a_value_never_becomes_a_second_header() -> None:
    with pytest.raises(ValueError):
        http1.request_head("GET", "/", "v", [("xi-api-key", "k\r\nX-Evil: 1")], None, streamed=False)


@pytest.mark.parametrize(("raw", "method", "framing", "keep"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5", "POST", http1.LENGTH, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "POST", http1.CHUNKED, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5", "POST", http1.CHUNKED, False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", "POST", http1.CLOSE, False),
    (b"HTTP/1.1 200 OK", "POST", http1.CLOSE, False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5", "HEAD", http1.NONE, True),
    (b"HTTP/1.1 204 No Content", "DELETE", http1.NONE, True),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5", "GET", http1.NONE, True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close", "GET", http1.NONE, False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1", "GET", http1.LENGTH, False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive", "GET", http1.LENGTH, True),
])
def test_an_answer_head_says_how_its_body_ends(raw: bytes, method: str, framing: int, keep: bool) -> None:
    head = http1.parse_head(raw, method)
    assert (head.framing, head.keep_alive) == (framing, keep)


def test_an_answer_head_keeps_names_values_and_reason_as_sent() -> None:
    head = http1.parse_head(b"HTTP/1.1 429 Too Many  Requests\r\nRetry-After:  3 \r\nX-Ray: a:b\r\nx-ray: c",
                            "POST")
    assert head.status == 429 and head.reason == "Too Many  Requests"
    assert head.headers == [("Retry-After", "3"), ("X-Ray", "a:b"), ("x-ray", "c")]


@pytest.mark.parametrize("raw", [
    b"HTTP/2 200 OK", b"HTTP/1.1 20 OK", b"ICY 200 OK", b"HTTP/1.1 200 OK\r\nNo-Colon",
    b"HTTP/1.1 200 OK\r\nA: 1\r\n folded", b"HTTP/1.1 200 OK\r\nBad Name: 1",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2", b"HTTP/1.1 200 OK\r\nContent-Length: -1",
])
def test_a_malformed_answer_head_is_refused(raw: bytes) -> None:
    with pytest.raises(http1.Malformed):
        http1.parse_head(raw, "GET")


def test_split_head_waits_for_the_blank_line_and_bounds_the_head() -> None:
    assert http1.split_head(b"HTTP/1.1 200 OK\r\nA: 1\r\n") is None
    assert http1.split_head(b"HTTP/1.1 200 OK\r\n\r\nbody") == (b"HTTP/1.1 200 OK", b"body")
    with pytest.raises(http1.Malformed):
        http1.split_head(b"x" * (http1.MAX_HEAD + 1))


CHUNKED_BODY = b"5\r\nhello\r\n1;ext=1\r\n \r\n0006\r\nworld!\r\n0\r\nTrailer: x\r\n\r\n"


@pytest.mark.parametrize("cut", range(1, len(CHUNKED_BODY)))
def test_a_chunked_body_is_the_same_however_the_reads_cut_it(cut: int) -> None:
    dec = http1.BodyDecoder(http1.parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "GET"))
    out: list[bytes] = []
    got = dec.feed(CHUNKED_BODY[:cut], out) if not dec.done else 0
    got += dec.feed(CHUNKED_BODY[cut:], out)
    assert b"".join(out) == b"hello world!" and got == 12 and dec.done and not dec.extra


def test_bytes_after_a_body_are_noticed() -> None:
    head = http1.parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3", "GET")
    dec, out = http1.BodyDecoder(head), []
    assert dec.feed(b"ab", out) == 2 and not dec.done
    assert dec.feed(b"cHTTP/1.1", out) == 1 and dec.done and dec.extra and out == [b"ab", b"c"]
    dec = http1.BodyDecoder(http1.parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "GET"))
    dec.feed(b"0\r\n\r\nX", out)
    assert dec.done and dec.extra


@pytest.mark.parametrize("body", [b"x\r\nhello\r\n", b"5\r\nhelloXX", b"5" * 9000])
def test_a_malformed_chunked_body_is_refused(body: bytes) -> None:
    dec = http1.BodyDecoder(http1.parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "GET"))
    with pytest.raises(http1.Malformed):
        dec.feed(body, [])
