"""The `turns` transform (Flux / Cartesia turn-taking) driven by the emulator's STT engine, no network.

The engine's messages go through the transform; a `send_gradium` flush is answered the way Gradium does
(held words released, then `flushed`), so these tests see the same message order as a live session.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.emulator.protocol import parse_stt_setup
from gateway.emulator.stt import SttEngine
from gateway.emulator.tones import synthesize
from gateway.mapping.transforms.base import SEND_GRADIUM, SessionInfo
from gateway.mapping.transforms.turns import TurnOptions, Turns

RATE = 24000
FRAME = 1920


class Harness:
    def __init__(self, **opts: Any) -> None:
        self.engine = SttEngine(parse_stt_setup({"type": "setup", "input_format": "pcm"}, 10))
        self.t = Turns(SessionInfo("r", {}), TurnOptions(**opts))
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._run([{"type": "ready"}])

    def _run(self, msgs: list[dict[str, Any]]) -> None:
        for m in msgs:
            for name, fields in self.t.on_gradium(m):
                if name == SEND_GRADIUM:
                    assert fields["type"] == "flush"
                    self._run([*self.engine.flush(), {"type": "flushed", "flush_id": fields["flush_id"]}])
                else:
                    self.events.append((name, fields))

    def audio(self, pcm: np.ndarray) -> None:
        for i in range(0, len(pcm), FRAME):
            self._run(self.engine.feed_audio(pcm[i : i + FRAME].astype("<i2").tobytes()))

    def say(self, text: str, silence_s: float = 0.0) -> None:
        pcm, _ = synthesize(text, RATE)
        self.audio(np.concatenate([pcm, np.zeros(int(silence_s * RATE), np.int16)]))

    def control(self, **fields: Any) -> None:
        for name, f in self.t.on_action("control", fields):
            if name == SEND_GRADIUM:
                self._run([*self.engine.flush(), {"type": "flushed", "flush_id": f["flush_id"]}])
            else:
                self.events.append((name, f))

    def close(self) -> None:
        self._run([*self.engine.finish(), {"type": "end_of_stream"}])

    def names(self, skip_updates: bool = True) -> list[str]:
        return [n for n, _ in self.events if not (skip_updates and n == "turn_update")]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [f for n, f in self.events if n == name]


def test_two_sentences_make_two_turns_with_words_and_one_sequence() -> None:
    h = Harness()
    h.say("hello world. how are you today?", silence_s=1.5)
    h.close()
    assert h.names() == ["connected", "turn_start", "turn_end", "turn_start", "turn_end", "closed"]
    ends = h.of("turn_end")
    assert [e["transcript"] for e in ends] == ["Hello world.", "How are you today?"]
    assert [e["turn_index"] for e in ends] == [0, 1] and all(e["trigger"] == "model" for e in ends)
    assert all(e["end_of_turn_confidence"] >= 0.7 for e in ends)
    assert ends[1]["audio_window_start"] == ends[0]["audio_window_end"] < ends[1]["audio_window_end"]
    for _, f in h.events:
        if f.get("transcript"):
            assert f["words"] and f["words"][0]["start"] <= f["words"][-1]["end"]
    seqs = [f["sequence_id"] for _, f in h.events]
    assert seqs == list(range(len(seqs)))
    updates = h.of("turn_update")
    assert len(updates) > 5 and any(u["transcript"] == "" for u in updates)


def test_eager_end_then_end_and_resume() -> None:
    h = Harness(eager_eot_threshold=0.4, eot_threshold=0.9)
    h.say("one two,", silence_s=0.2)  # a comma pause: eager, then speech resumes
    h.say("three four.", silence_s=1.5)
    h.close()
    names = h.names()
    assert names[:2] == ["connected", "turn_start"] and names[-2:] == ["turn_end", "closed"]
    assert "eager_end" in names
    end = h.of("turn_end")[-1]
    before = names[names.index("turn_end") - 1]
    assert before in ("eager_end", "turn_resumed")
    eagers = h.of("eager_end")
    if before == "eager_end":
        assert eagers[-1]["transcript"] == end["transcript"]
    assert end["transcript"].endswith("four.")


def test_timeout_and_disabled_model_eot() -> None:
    h = Harness(eot_threshold=1.0, eot_timeout_ms=600)
    h.say("hello there.", silence_s=1.2)
    ends = h.of("turn_end")
    assert len(ends) == 1 and ends[0]["trigger"] == "timeout" and ends[0]["transcript"] == "Hello there."


def test_force_end_and_close_mid_turn() -> None:
    h = Harness(eot_threshold=1.0, eot_timeout_ms=60000)
    h.say("first part")
    h.control(control="force_end")
    (end,) = h.of("turn_end")
    assert end["trigger"] == "manual" and end["transcript"] == "First part"
    h.control(control="force_end")  # between turns: nothing
    assert len(h.of("turn_end")) == 1
    h.say("second")
    h.close()
    ends = h.of("turn_end")
    assert [e["transcript"] for e in ends] == ["First part", "Second"] and ends[1]["turn_index"] == 1


def test_configure_success_and_failures() -> None:
    h = Harness(eot_range=(0.5, 1.0), eager_range=(0.3, 0.9), timeout_range_ms=(500, 60000))
    h.control(control="configure", thresholds={"eot_threshold": 0.8, "eager_eot_threshold": 0.5},
              keyterms=["Gradium"])
    ok = h.of("configured")[-1]
    assert ok["thresholds"] == {"eot_threshold": 0.8, "eager_eot_threshold": 0.5, "eot_timeout_ms": 5000}
    assert ok["keyterms"] == ["Gradium"] and h.t.eot == 0.8
    for bad in ({"eot_threshold": 3}, {"eot_threshold": "high"}, {"eager_eot_threshold": 0.95},
                {"eot_timeout_ms": 10}, "fast"):
        h.control(control="configure", thresholds=bad)
    fails = h.of("configure_failed")
    assert len(fails) == 5 and all(f["code"] and f["description"] for f in fails)
    assert h.t.eot == 0.8 and h.t.eager == 0.5  # failures change nothing
