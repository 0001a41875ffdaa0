"""Seeded generators of hostile HTTP requests and WebSocket sessions over every route of the three
dialects: wrong methods, bad path params, malformed and huge credentials, forged tokens, broken JSON,
wrong types, junk audio, HTTP/1.0, broken framing. Pure: the same seed gives the same cases."""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from tests.audiocheck import speech, wav_bytes

SECRET = "gsk_fuzzSECRETKEY7731"  # a valid key for the emulator; must never come back to a client
VOICES = {"elevenlabs": "21m00Tcm4TlvDq8ikWAM", "cartesia": "a0e99841-438c-4a64-b679-ae501e7d6091",
          "deepgram": "aura-2-thalia-en"}
PCM = speech("one two", 16000)[:16000]
WAV = wav_bytes("one two", 16000)
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FOO"]


@dataclass
class HttpCase:
    provider: str
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    version: str = "1.1"
    framing: str = "length"  # length | chunked | broken_chunked | short (body shorter than announced, then EOF)


@dataclass
class WsSession:
    provider: str
    target: str
    headers: dict[str, str]
    frames: list[tuple[str, Any]] = field(default_factory=list)  # ("text", str) | ("binary", bytes)
    ending: str = "close"  # close | wait | abort


def _junk_str(rng: random.Random) -> str:
    return rng.choice([
        "", " ", "\x00", "abc\r\ndef", "\u202e\u0000\ud7ff", "💥" * 50, "A" * rng.choice([300, 70_000]),
        "../../etc/passwd", "%00%0d%0a", "{{$request_id}}", "$secret", "null", "-1", "1e309", "true",
    ])


def _junk_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([0, -1, 2**63, 1.5, -1e308, 10**40])
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3 and depth < 3:
        return [_junk_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 4 and depth < 3:
        return {_junk_str(rng)[:20]: _junk_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    if kind == 5:
        return [[[[[[[[[[[]]]]]]]]]]]
    return _junk_str(rng)


def mutate_json(rng: random.Random, doc: Any) -> Any:
    if not isinstance(doc, dict) or rng.random() < 0.08:
        return _junk_value(rng)
    doc = dict(doc)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(4)
        if op == 0 and doc:
            doc.pop(rng.choice(list(doc)))
        elif op == 1 and doc:
            doc[rng.choice(list(doc))] = _junk_value(rng)
        elif op == 2:
            doc[_junk_str(rng)[:40] or "x"] = _junk_value(rng)
        elif op == 3 and doc:
            key = rng.choice(list(doc))
            if isinstance(doc[key], dict):
                doc[key] = mutate_json(rng, doc[key])
    return doc


# -- HTTP ---------------------------------------------------------------------------------------------

def valid_body(provider: str, route: str) -> tuple[bytes, str]:
    """A plausible body for a route, and its content type."""
    if provider == "elevenlabs":
        if route.startswith("tts"):
            return orjson.dumps({"text": "hello there", "model_id": "eleven_multilingual_v2"}), "application/json"
        if route.startswith("dialogue"):
            return orjson.dumps({"inputs": [{"text": "hi", "voice_id": VOICES["elevenlabs"]}]}), "application/json"
        if route == "speech_to_text":
            return _multipart({"model_id": "scribe_v1"}, "file", WAV)
    if provider == "cartesia":
        if route.startswith("tts"):
            return orjson.dumps({"model_id": "sonic-2", "transcript": "hello there",
                                 "voice": {"mode": "id", "id": VOICES["cartesia"]},
                                 "output_format": {"container": "raw", "encoding": "pcm_s16le",
                                                   "sample_rate": 16000}}), "application/json"
        if route == "stt_batch":
            return _multipart({"model": "ink-whisper"}, "file", WAV)
        if route == "access_token":
            return orjson.dumps({"grants": {"tts": True}, "expires_in": 60}), "application/json"
    if provider == "deepgram":
        if route == "speak_rest":
            return orjson.dumps({"text": "hello there"}), "application/json"
        if route == "listen_prerecorded":
            return WAV, "audio/wav"
        if route == "auth_grant":
            return orjson.dumps({"ttl_seconds": 30}), "application/json"
    return b"", ""


def _multipart(fields: dict[str, str], file_field: str, data: bytes) -> tuple[bytes, str]:
    boundary = "fuzzb0undary"
    out = b""
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="a.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def credential_headers(provider: str, rng: random.Random, tokens: dict[str, str]) -> tuple[list, str]:
    """(headers, query suffix) carrying a valid, missing, malformed, forged or foreign credential."""
    choice = rng.randrange(10)
    key: bytes = SECRET.encode()
    if choice == 1:
        return [], ""
    if choice == 2:
        key = SECRET.encode() + rng.choice([b"\x01", b"\x00", b"\xff\xfe", b"\x7f", b"\r"]) + b"x"
    elif choice == 3:
        key = b"K" * rng.choice([5000, 9000])
    elif choice == 4:
        key = b"revoked_" + SECRET.encode()
    elif choice == 5:
        key = (rng.choice(list(tokens.values())) if tokens else "gwt_forged").encode()
    elif choice == 6:
        key = b"eyJhbGciOiJIUzI1NiIsImtpZCI6ImdyYWRpdW0tZ2F0ZXdheSIsInR5cCI6IkpXVCJ9.e30.forged"
    elif choice == 7:  # in the query
        name = {"elevenlabs": "token", "deepgram": "token", "cartesia": "api_key"}[provider]
        value = rng.choice([SECRET, SECRET + "%0d%0a", "%ff" + SECRET, tokens.get(provider, "x")])
        return [], f"{name}={value}" if "%" in value else f"{name}={quote(value)}"
    if provider == "elevenlabs":
        return [(b"xi-api-key", key)], ""
    if provider == "deepgram":
        return [(b"Authorization", rng.choice([b"Token ", b"Bearer ", b"Basic ", b""]) + key)], ""
    return [(b"X-API-Key", key)] if rng.random() < 0.5 else [(b"Authorization", b"Bearer " + key)], ""


def fill_path(path: str, provider: str, rng: random.Random) -> str:
    out = []
    for seg in path.split("/"):
        if seg.startswith("{"):
            seg = rng.choice([VOICES[provider], VOICES[provider], quote(_junk_str(rng)[:3000], safe=""),
                              "%2e%2e", "x" * 200, "%00"]) or "x"
        out.append(seg)
    return "/".join(out)


def http_case(rng: random.Random, provider: str, routes: list[tuple[str, str, str, bool]],
              tokens: dict[str, str]) -> HttpCase:
    name, method, path, is_ws = rng.choice(routes)
    prefix = f"/{provider}" if rng.random() < 0.3 else ""
    target = prefix + fill_path(path, provider, rng)
    roll = rng.random()
    if roll < 0.1:
        method = rng.choice(METHODS)  # mostly wrong
    elif roll < 0.15:
        target += "/" + rng.choice(["nope", "x/y", "%ff", "..", "v9"])
    elif is_ws:
        method = "GET"
    body, ctype = valid_body(provider, name)
    if body and rng.random() < 0.6:
        if ctype == "application/json":
            body = json.dumps(mutate_json(rng, orjson.loads(body))).encode()
        else:
            body = rng.choice([b"", body[: rng.randrange(len(body))], bytes(rng.randrange(256) for _ in range(500)),
                               body.replace(b"RIFF", b"RIFX"), b"{not json"])
    if rng.random() < 0.1:
        ctype = rng.choice(["", "text/plain", "multipart/form-data", "application/json; charset=latin-1",
                            "audio/x-nothing", "application/x-www-form-urlencoded"])
    headers, query = credential_headers(provider, rng, tokens)
    params = [query] if query else []
    if provider == "cartesia" and rng.random() < 0.8:
        headers.append((b"Cartesia-Version", rng.choice([b"2026-03-01", b"2024-11-13", b"2025-04-16", b"junk"])))
    if rng.random() < 0.3:
        params.append(rng.choice(["output_format=pcm_16000", "output_format=flac_9", "model=nova-3", "encoding=mp3",
                                  "sample_rate=-5", "language=" + "x" * 3000, "speed=9", "enable_logging=maybe",
                                  "keyterm=a&keyterm=b", "optimize_streaming_latency=99", "tag=%00"]))
    if params:
        target += ("&" if "?" in target else "?") + "&".join(params)
    if ctype:
        headers.append((b"Content-Type", ctype.encode()))
    if rng.random() < 0.05:
        headers.append((b"X-Junk-" + bytes([rng.randrange(0x21, 0x7f)]), b"\x01" + SECRET.encode()))
    version = "1.0" if rng.random() < 0.08 else "1.1"
    framing = "length"
    r = rng.random()
    if version == "1.1" and r < 0.06:
        framing = "chunked"
    elif version == "1.1" and r < 0.09:
        framing = "broken_chunked"
    elif r < 0.11 and body:
        framing = "short"
    return HttpCase(provider, method, target, headers, body, version, framing)


# -- WebSocket ----------------------------------------------------------------------------------------

def _b64pcm(rng: random.Random) -> str:
    return base64.b64encode(PCM[: rng.randrange(2, len(PCM), 2)]).decode()


def ws_messages(provider: str, route: str, rng: random.Random) -> list[Any]:
    """Plausible messages for a socket route (the fuzzer mutates and mixes them with junk)."""
    v = VOICES[provider]
    if provider == "elevenlabs":
        if route == "stt_realtime":
            return [{"message_type": "input_audio_chunk", "audio_base_64": _b64pcm(rng), "commit": rng.random() < .3},
                    {"message_type": "input_audio_chunk", "audio_base_64": "!!notbase64"}]
        if route == "dialogue_multi_stream_input":
            return [{"context_id": "a", "inputs": [{"text": "Hi there", "voice_id": v}]},
                    {"context_id": "a", "close_context": True}, {"close_socket": True}]
        ctx = {"context_id": rng.choice(["a", "b", "c" * 5000])} if "multi" in route else {}
        return [{"text": " ", **ctx}, {"text": "Hello there. ", **ctx}, {"text": "more ", "flush": True, **ctx},
                {"text": "", **ctx}, {"close_context": True, **ctx}, {"close_socket": True}]
    if provider == "cartesia":
        if route == "tts_websocket":
            base = {"context_id": rng.choice(["a", "b", "z" * 5000]), "model_id": "sonic-2", "transcript": "Hi there ",
                    "voice": {"mode": "id", "id": v},
                    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}}
            return [base, {**base, "continue": True}, {**base, "transcript": "", "continue": False},
                    {"context_id": base["context_id"], "cancel": True}]
        return [PCM[: rng.randrange(2, len(PCM), 2)], "finalize", "done", {"type": "finalize"}]
    if route == "speak_live":
        return [{"type": "Speak", "text": "Hello there"}, {"type": "Flush"}, {"type": "Clear"}, {"type": "Close"}]
    return [PCM[: rng.randrange(2, len(PCM), 2)], {"type": "KeepAlive"}, {"type": "Finalize"},
            {"type": "CloseStream"}, {"type": "Configure", "thresholds": {"eot_threshold": 0.7}}]


def ws_session(rng: random.Random, provider: str, routes: list[tuple[str, str, str, bool]],
               tokens: dict[str, str]) -> WsSession:
    name, _, path, _ = rng.choice([r for r in routes if r[3]])
    target = fill_path(path, provider, rng)
    query = {"elevenlabs": ["output_format=pcm_16000", "model_id=eleven_flash_v2_5", "inactivity_timeout=5"],
             "cartesia": ["encoding=pcm_s16le&sample_rate=16000", "cartesia_version=2026-03-01", "model=ink-whisper"],
             "deepgram": ["encoding=linear16&sample_rate=16000", "model=nova-3", "interim_results=true"]}[provider]
    params = [q for q in query if rng.random() < 0.7]
    if rng.random() < 0.3:
        params.append(rng.choice(["encoding=opus9", "sample_rate=0", "model=" + "m" * 3000, "output_format=x",
                                  "language=%00", "keyterm=" + "k" * 500]))
    headers: dict[str, str] = {}
    roll = rng.randrange(8)
    cred = SECRET if roll < 5 else rng.choice(["revoked_x", tokens.get(provider, "gwt_forged"), "", "K" * 5000])
    if cred:
        if provider == "elevenlabs":
            headers["xi-api-key"] = cred
        elif provider == "deepgram":
            if rng.random() < 0.5:
                headers["Authorization"] = f"Token {cred}"
            else:
                headers["Sec-WebSocket-Protocol"] = f"token, {cred}"
        else:
            headers["X-API-Key"] = cred
    if provider == "cartesia":
        headers["Cartesia-Version"] = "2026-03-01"
    if params:
        target += "?" + "&".join(params)
    pool = ws_messages(provider, name, rng)
    frames: list[tuple[str, Any]] = []
    for _ in range(rng.randrange(0, 7)):
        r = rng.random()
        if r < 0.55:
            m = rng.choice(pool)
        elif r < 0.75:
            m = mutate_json(rng, rng.choice([p for p in pool if isinstance(p, dict)] or [{}]))
        elif r < 0.85:
            m = rng.choice(["{not json", "", "null", "[]", "\x00\x01", "A" * 100_000, '{"type": 5}'])
        else:
            m = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 3000])))
        if isinstance(m, bytes):
            frames.append(("binary", m))
        elif isinstance(m, str):
            frames.append(("text", m))
        else:
            frames.append(("text", json.dumps(m)))
    ending = rng.choice(["close", "close", "wait", "abort"])
    return WsSession(provider, target, headers, frames, ending)
