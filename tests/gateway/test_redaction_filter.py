"""Log redaction skips texts that cannot hold a secret (one search instead of three substitutions per string):
it must redact exactly what the three substitutions alone do."""

from __future__ import annotations

import itertools

from gateway.observability import _PROTOCOL_LIST, _SECRET_HEADER, _SECRET_TEXT, _redact, redact_text


def _always(text: str) -> str:
    text = _SECRET_HEADER.sub(lambda m: m.group(1) + "***", text)
    text = _PROTOCOL_LIST.sub(lambda m: m.group(1) + "[***]", text)
    return _SECRET_TEXT.sub(lambda m: m.group(1) + "***", text)


WORDS = ["authorization", "Proxy-Authorization", "x-api-key", "XI-API-KEY", "api-key", "cookie", "Set-Cookie",
         "sec-websocket-protocol", "Client protocols", "token", "Bearer", "basic", "api_key", "access_token",
         "single_use_token", "xi_api_key", "status", "request_id"]
SHAPES = ["{w}: s3cr3t", "{w} s3cr3t", "{w}=s3cr3t&x=1", "b'{w}: s3cr3t'", "{w} ['token', 'k']", "{w}", "ok {w}"]


def test_the_prefilter_redacts_what_the_substitutions_do() -> None:
    for word, shape in itertools.product(WORDS, SHAPES):
        text = shape.format(w=word)
        assert redact_text(text) == _always(text), text
    assert redact_text("3f1c-uuid ws.done deepgram listen gradium ok") == "3f1c-uuid ws.done deepgram listen gradium ok"


def test_secret_field_names_are_redacted_every_time() -> None:
    for _ in range(2):  # the second time from the cache of field names
        assert _redact({"xi-api-key": "k", "Authorization": "Token q", "route": "listen"}) == {
            "xi-api-key": "***", "Authorization": "***", "route": "listen"}
