"""`cartesia_tts` (flush ids and a context clock across Gradium requests) and the Cartesia value functions."""

from __future__ import annotations

import base64
from typing import Any

from gateway.audio.formats import pcm16
from gateway.mapping.functions import VALUE_FUNCTIONS
from gateway.mapping.transforms import TRANSFORMS, SessionInfo


def request(shared: dict[str, Any], timestamps: bool = True) -> Any:
    cls = TRANSFORMS["cartesia_tts"]
    info = SessionInfo("r", {}, audio_out=pcm16(16000), gradium_out=pcm16(16000), shared=shared)
    return cls(info, cls.Options(timestamps=timestamps))


def gradium(t: Any, words: list[tuple[str, float, float]]) -> list[tuple[str, dict[str, Any]]]:
    events = t.on_gradium({"type": "ready", "request_id": "x"})
    for text, start, stop in words:
        events += t.on_gradium({"type": "text", "text": text, "start_s": start, "stop_s": stop})
        events += t.on_gradium({"type": "audio", "audio": base64.b64encode(bytes(640)).decode(),
                                "start_s": start, "stop_s": stop})
    return events + t.on_gradium({"type": "end_of_stream"})


def test_flush_ends_a_request_and_the_context_goes_on() -> None:
    shared: dict[str, Any] = {}
    first = request(shared)
    first.on_action("text", {"text": "Hello", "continue": True, "end": True})  # a flush
    ev1 = gradium(first, [("Hello,", 0.0, 0.4)])
    assert [n for n, _ in ev1] == ["chunk", "timestamps", "flush_done"]
    assert ev1[0][1]["flush_id"] == 1 and ev1[-1][1]["flush_id"] == 1
    assert ev1[1][1] == {"words": ["Hello,"], "start_s": [0.0], "stop_s": [0.4], "flush_id": 1}

    second = request(shared)  # the context's next text, after the flush
    second.on_action("text", {"text": "world.", "end": True})  # continue: false
    ev2 = gradium(second, [("world.", 0.1, 0.5)])
    assert [n for n, _ in ev2] == ["chunk", "timestamps", "done"]
    assert ev2[0][1]["flush_id"] == 2
    assert ev2[1][1]["start_s"] == [0.5] and ev2[1][1]["stop_s"] == [0.9]  # context time runs on
    assert shared == {}  # the context is over: nothing left for a next request


def test_without_timestamps_and_a_plain_end() -> None:
    t = request({}, timestamps=False)
    events = gradium(t, [("Hi.", 0.0, 0.2)])
    assert [n for n, _ in events] == ["chunk", "done"]
    assert events[0][1]["audio_b64"] and events[0][1]["step_time"] >= 0


def test_speed_functions() -> None:
    f = VALUE_FUNCTIONS["cartesia_speed_to_padding_bonus"]
    assert f("normal") == 0.0 and f("fast") == -2.0 and f("slowest") == 4.0
    assert f(1.0) == -4.0 and f(-0.5) == 2.0 and f(0) == 0.0
    assert f("warp") is None and f(True) is None and f(None) is None
    assert VALUE_FUNCTIONS["one_minus"](0.2) == 0.8
