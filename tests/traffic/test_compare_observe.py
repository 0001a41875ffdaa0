"""Dialect frames read into traces by the observer rules, then compared."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from gateway.audio.formats import pcm16
from gateway.traffic.compare import compare_pair
from gateway.traffic.observe import RULES, Observer, observe_rest_body
from gateway.traffic.trace import LegTrace, PairTrace


def _leg(provider: str, route: str, kind: str = "stt") -> LegTrace:
    return LegTrace("gradium", "primary", provider, route, kind, "ws")  # type: ignore[arg-type]


def _results(text: str, final: bool, start: float, words: list[tuple[str, float, float]], speech_final: bool = False
             ) -> str:
    return json.dumps({"type": "Results", "is_final": final, "speech_final": speech_final, "start": start,
                       "duration": 1.0, "channel": {"alternatives": [{"transcript": text, "words": [
                           {"word": w, "start": s, "end": e, "punctuated_word": w} for w, s, e in words]}]}})


def test_deepgram_listen_frames() -> None:
    leg = _leg("deepgram", "listen_live")
    obs = Observer(leg, "deepgram", "listen_live", pcm16(16000))
    for i in range(100):
        obs.client(b"\0" * 640, t=i * 20.0)  # 20 ms of 16 kHz s16 each
    obs.client(json.dumps({"type": "KeepAlive"}), t=2000.0)
    obs.client(json.dumps({"type": "Finalize"}), t=2001.0)
    obs.upstream(json.dumps({"type": "Metadata"}), t=1.0)
    obs.upstream(_results("hello", False, 0.0, []), t=300.0)
    obs.upstream(_results("hello world", True, 0.0, [("hello", 0.1, 0.4), ("world", 0.5, 0.9)], True), t=1100.0)
    obs.upstream(_results("again", True, 1.0, [("again", 1.2, 1.6)]), t=2100.0)
    assert leg.audio_sent_s == pytest.approx(2.0)
    assert [c.kind for c in leg.controls] == ["keepalive", "finalize"]
    assert leg.final_text() == "hello world again"
    turns = [o for o in leg.outputs if o.kind == "turn"]
    assert len(turns) == 1 and turns[0].audio_end_s == 1.0
    assert leg.first_output_ms == 300.0 and leg.finals()[0].words[1].end == 0.9


def test_elevenlabs_multi_context_tts_frames() -> None:
    leg = _leg("elevenlabs", "tts_multi_stream_input", "tts")
    obs = Observer(leg, "elevenlabs", "tts_multi_stream_input")
    obs.client(json.dumps({"text": " ", "context_id": "a", "voice_settings": {}}), t=0.0)
    obs.client(json.dumps({"text": "Hello there", "context_id": "a", "flush": True}), t=10.0)
    obs.client(json.dumps({"context_id": "a", "close_context": True}), t=20.0)
    audio = base64.b64encode(b"\1\0" * 100).decode()
    obs.upstream(json.dumps({"audio": audio, "contextId": "a", "isFinal": None}), t=90.0)
    obs.upstream(json.dumps({"isFinal": True, "contextId": "a"}), t=95.0)
    assert leg.first_text_ms == {"a": 10.0}
    assert [c.kind for c in leg.controls] == ["flush", "close_context"]
    assert leg.audio_bytes("a") == b"\1\0" * 100 and leg.first_output_ms == 90.0


def test_elevenlabs_realtime_stt_base64_audio_and_commit() -> None:
    leg = _leg("elevenlabs", "stt_realtime")
    obs = Observer(leg, "elevenlabs", "stt_realtime", pcm16(16000))
    chunk = base64.b64encode(b"\0" * 3200).decode()
    obs.client(json.dumps({"message_type": "input_audio_chunk", "audio_base_64": chunk, "commit": True}), t=0.0)
    obs.upstream(json.dumps({"message_type": "partial_transcript", "text": "hel"}), t=50.0)
    obs.upstream(json.dumps({"message_type": "committed_transcript", "text": "hello"}), t=80.0)
    obs.upstream(json.dumps({"message_type": "committed_transcript_with_timestamps", "text": "hello"}), t=81.0)
    assert leg.audio_sent_s == pytest.approx(0.1) and [c.kind for c in leg.controls] == ["finalize"]
    assert leg.final_text() == "hello"  # the timestamped duplicate is not a second final


def test_cartesia_stt_deltas_and_bare_word_commands() -> None:
    leg = _leg("cartesia", "stt_websocket")
    obs = Observer(leg, "cartesia", "stt_websocket")
    obs.client("finalize", t=1.0)
    obs.upstream(json.dumps({"type": "transcript", "text": "hel", "is_final": True}), t=5.0)
    obs.upstream(json.dumps({"type": "transcript", "text": "lo wor", "is_final": False}), t=6.0)
    obs.upstream(json.dumps({"type": "transcript", "text": "lo world", "is_final": True}), t=7.0)
    assert leg.final_text() == "hello world" and leg.controls[0].kind == "finalize"


def test_flux_and_cartesia_turns() -> None:
    leg = _leg("deepgram", "listen_flux")
    obs = Observer(leg, "deepgram", "listen_flux")
    obs.upstream(json.dumps({"type": "TurnInfo", "event": "Update", "transcript": "hi"}), t=1.0)
    obs.upstream(json.dumps({"type": "TurnInfo", "event": "EndOfTurn", "transcript": "hi there",
                             "audio_window_end": 2.25, "words": [{"word": "hi", "confidence": 0.9}]}), t=2.0)
    assert leg.final_text() == "hi there"
    assert [o.audio_end_s for o in leg.outputs if o.kind == "turn"] == [2.25]
    leg = _leg("cartesia", "stt_turns")
    Observer(leg, "cartesia", "stt_turns").upstream(json.dumps({"type": "turn.end", "transcript": "ok"}), t=3.0)
    assert leg.final_text() == "ok" and sum(o.kind == "turn" for o in leg.outputs) == 1


def test_cartesia_tts_chunks_and_cancel() -> None:
    leg = _leg("cartesia", "tts_websocket", "tts")
    obs = Observer(leg, "cartesia", "tts_websocket")
    obs.client(json.dumps({"transcript": "Hi", "context_id": "c1", "continue": True}), t=0.0)
    obs.client(json.dumps({"context_id": "c1", "cancel": True}), t=30.0)
    obs.upstream(json.dumps({"type": "chunk", "data": base64.b64encode(b"ab").decode(), "context_id": "c1"}), t=20.0)
    obs.upstream(json.dumps({"type": "done", "context_id": "c1"}), t=25.0)
    assert leg.audio_bytes("c1") == b"ab" and leg.controls[0].kind == "cancel"


def test_rest_bodies() -> None:
    leg = _leg("deepgram", "listen_prerecorded")
    body = {"results": {"channels": [{"alternatives": [{"transcript": "one two", "words": [
        {"word": "one", "start": 0.1, "end": 0.3}, {"word": "two", "start": 0.4, "end": 0.6}]}]}]}}
    observe_rest_body(leg, json.dumps(body).encode(), "application/json; charset=utf-8", t=5.0)
    assert leg.final_text() == "one two" and len(leg.finals()[0].words) == 2
    leg = _leg("elevenlabs", "tts_convert", "tts")
    observe_rest_body(leg, b"ID3....", "audio/mpeg", t=1.0)
    assert leg.audio_bytes() == b"ID3...."


def test_every_speech_socket_route_has_rules() -> None:
    from gateway.config import PACKAGE_MAPPINGS, VoiceSettings
    from gateway.mapping.loader import load_mappings

    mappings = load_mappings(PACKAGE_MAPPINGS, VoiceSettings())
    ws_speech = {(m.provider, r.name) for m in mappings.values() for r in m.routes.values()
                 if r.is_ws and getattr(r, "name", None)}
    assert ws_speech and ws_speech <= set(RULES), ws_speech - set(RULES)


def test_observed_pair_compares_end_to_end() -> None:
    pair = PairTrace.open(tenant="acme", provider="deepgram", route="listen_live", kind="stt", transport="ws",
                          primary_side="gradium", shadow_side="legacy", audio_format=pcm16(16000))
    obs = {k: Observer(leg, "deepgram", "listen_live", pcm16(16000)) for k, leg in
           (("p", pair.primary), ("s", pair.shadow))}
    audio = (np.zeros(320, "<i2")).tobytes()
    for i in range(50):
        for o in obs.values():
            o.client(audio, t=i * 20.0)
    obs["p"].upstream(_results("the cat sat", True, 0.0, [("the", 0.0, 0.1), ("cat", 0.2, 0.3), ("sat", 0.4, 0.5)]),
                      t=700.0)
    obs["s"].upstream(_results("the cat sat", True, 0.0, [("the", 0.0, 0.1), ("cat", 0.2, 0.3), ("sat", 0.4, 0.5)]),
                      t=760.0)
    row = compare_pair(pair).row
    assert row["wer"] == 0.0 and row["first_final_ms_p"] == 700.0 and row["first_final_ms_s"] == 760.0
    assert row["emission_ms_p"] == pytest.approx(420.0)  # word ends 0.1/0.3/0.5 s sent at 80/280/480 ms
