"""Client frames -> messages -> the route's first matching inbound rule (pure; no socket).

Text frames are JSON; on routes with bare-text rules (Cartesia's `finalize`) a text frame that is not
JSON is that command, as a string. Binary frames are bytes (audio, or whatever the route's rules say).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.mapping.compiler import CompiledInbound, CompiledWs
from gateway.session.port import BINARY, TEXT, TOO_BIG

try:  # SIMD base64 (ElevenLabs realtime STT: every audio chunk is a base64 string)
    from pybase64 import b64decode as _fast_b64decode
except ImportError:  # pragma: no cover
    _fast_b64decode = base64.b64decode


_BYTES = (bytes, bytearray)


def decode(ws: CompiledWs, kind: str, data: str | bytes) -> Any:
    if kind == TEXT:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            if ws.plain_text:  # bare text commands (`finalize`), matched by list rules
                return data.strip() if isinstance(data, str) else data
            raise GatewayError("invalid_message", "Could not parse message: expected JSON") from None
    if kind == BINARY:
        return data
    if kind == TOO_BIG:
        raise GatewayError("payload_too_large", "Message is too large")
    raise ValueError(f"not a message: {kind}")


def match(ws: CompiledWs, message: Any) -> CompiledInbound | None:
    """The first rule whose `when` matches (None: no rule does, the message is ignored)."""
    for rule in ws.inbound:
        if rule.match(message):
            return rule
    return None


def audio_bytes(chunk: Any) -> bytes:
    """An `audio` action's audio: a binary frame's bytes, or a base64 string from a JSON field."""
    if chunk is None:
        return b""
    if isinstance(chunk, str):
        try:
            return _fast_b64decode(chunk, validate=True)
        except (binascii.Error, ValueError):
            pass
        try:  # what the fast decoder refuses, the stdlib's rules judge (it takes e.g. excess padding)
            return base64.b64decode(chunk, validate=True)
        except (binascii.Error, ValueError):
            raise GatewayError("invalid_audio", "audio is not valid base64") from None
    if isinstance(chunk, _BYTES):
        return bytes(chunk)
    raise GatewayError("invalid_message", "audio must be a base64 string")
