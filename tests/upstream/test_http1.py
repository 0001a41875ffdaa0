"""The request heads the REST passthrough's relay writes (gateway/upstream/http1.py). How it reads the
vendor's answers (llhttp) is tested through the relay: tests/upstream/test_relay_answers.py."""

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
