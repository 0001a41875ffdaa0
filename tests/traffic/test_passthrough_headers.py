"""What a passthrough request and answer keep of their query and headers (the one-pass and no-split fast
paths must drop exactly what the general path drops), and the per-request ids and hashes the split uses."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid

from gateway.auth import Credential
from gateway.events import new_request_id
from gateway.traffic.own_ids import may_name
from gateway.upstream.passthrough import response_headers, strip_query, upstream_headers

NAMES = frozenset({"token", "api_key", "gw_session"})


def test_query_credentials_are_stripped_however_encoded() -> None:
    assert strip_query("a=1&token=k&b=2", NAMES) == "a=1&b=2"
    assert strip_query("tok%65n=k&a=1", NAMES) == "a=1"  # the name percent-encoded
    assert strip_query("TOKEN=k&a=1", NAMES) == "a=1"
    assert strip_query("a=1&api%5Fkey=k", ["API_KEY"]) == "a=1"
    assert strip_query("gw+session=1&a=2", {"gw session"}) == "a=2"  # `+` is a space in a query


def test_a_query_without_credentials_is_kept_byte_for_byte() -> None:
    raw = "output_format=pcm_24000&text=caf%C3%A9+au+lait&x=%2F"
    assert strip_query(raw, NAMES) == raw
    assert strip_query("", NAMES) == ""
    assert strip_query("tokenizer=a&my_token=b", NAMES) == "tokenizer=a&my_token=b"  # names contain, not equal


def test_request_headers_lose_hop_by_hop_credentials_and_our_own() -> None:
    got = upstream_headers([
        ("Host", "gw"), ("Connection", "keep-alive, X-Trace"), ("x-trace", "1"), ("Keep-Alive", "5"),
        ("xi-api-key", "secret"), ("X-Gateway-Target", "legacy"), ("Proxy-Authorization", "p"),
        ("Proxy-Foo", "p"), ("X-Forwarded-For", "1.2.3.4"), ("Accept", "a"), ("Accept", "b"),
        ("Content-Type", "application/json"),
    ], frozenset({"xi-api-key"}))
    assert list(got.items()) == [("Accept", "a"), ("Accept", "b"), ("Content-Type", "application/json")]
    kept = upstream_headers([("X-Forwarded-For", "1.2.3.4"), ("Sec-WebSocket-Key", "k")], ["XI-API-KEY"],
                            forward_ip=True, ws=True)
    assert list(kept.items()) == [("X-Forwarded-For", "1.2.3.4")]


def test_answer_headers_lose_hop_by_hop_only() -> None:
    got = response_headers([
        ("Transfer-Encoding", "chunked"), ("Connection", "close, dg-debug"), ("DG-Debug", "1"),
        ("request-id", "r1"), ("x-gateway-target", "gradium"), ("Proxy-Authenticate", "x"),
        ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
    ])
    assert list(got.items()) == [("request-id", "r1"), ("x-gateway-target", "gradium"), ("Set-Cookie", "a=1"),
                                 ("Set-Cookie", "b=2")]


def test_request_ids_are_version_4_uuids() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122


def test_a_credential_is_hashed_once_and_judged_once() -> None:
    cred = Credential("sk_test\x01")
    assert cred.sha256() == hashlib.sha256(b"sk_test\x01").hexdigest()
    assert cred.sha256() is cred.sha256()
    assert cred.malformed and cred.malformed
    assert not Credential("sk_ok").malformed
    other = dataclasses.replace(cred, value="sk_ok")  # a copy judges and hashes its own value
    assert not other.malformed and other.sha256() == hashlib.sha256(b"sk_ok").hexdigest()


def test_a_body_is_parsed_for_own_ids_only_when_it_may_hold_one() -> None:
    fields = (b"pronunciation_dictionary_locators",)
    assert not may_name(b'{"text":"hello","model_id":"m"}', fields)
    assert may_name(b'{"text":"x","pronunciation_dictionary_locators":[]}', fields)
    assert may_name(b'{"\\u0070ronunciation_dictionary_locators":[]}', fields)  # an escaped key: parse
