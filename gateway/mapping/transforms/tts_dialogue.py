"""`tts_dialogue`: `tts_audio` for a request spoken as several Gradium requests (`gradium.segments`).

Besides audio and alignment, it tracks where each segment (a dialogue line and its voice) lies in
the audio and in the alignment's characters, from the `segment` markers the sequence puts where each
one starts. `audio` and `complete` events carry them as `voice_segments`: dicts with `voice_id` (what
the segment's `voice_id` field says), `dialogue_input_index`, `start_time_seconds`,
`end_time_seconds`, `character_start_index` and `character_end_index` (exclusive).
"""

from __future__ import annotations

from typing import Any

from gateway.mapping.transforms.base import Event, SessionInfo, register
from gateway.mapping.transforms.tts_audio import TtsAudio, TtsAudioOptions
from gateway.upstream import protocol as gradium


@register
class TtsDialogue(TtsAudio):
    name = "tts_dialogue"
    Options = TtsAudioOptions
    EVENTS = {
        **TtsAudio.EVENTS,
        "audio": TtsAudio.EVENTS["audio"] | {"voice_segments"},
        "complete": TtsAudio.EVENTS["complete"] | {"voice_segments"},
    }

    def __init__(self, info: SessionInfo, options: TtsAudioOptions) -> None:  # type: ignore[override]
        super().__init__(info, options)
        self.voice_segments: list[dict[str, Any]] = []

    def _close_last(self, at: float) -> None:
        if self.voice_segments and self.voice_segments[-1]["end_time_seconds"] is None:
            last = self.voice_segments[-1]
            last["end_time_seconds"] = round(max(at, last["start_time_seconds"]), 3)
            last["character_end_index"] = len(self.timeline.chars)

    def _snapshot(self, start: float | None, stop: float | None) -> list[dict[str, Any]]:
        """Segments overlapping [start, stop] (all of them when None); an open one ends at the clock."""
        out = []
        for seg in self.voice_segments:
            end = seg["end_time_seconds"]
            shown = dict(seg)
            if end is None:
                shown["end_time_seconds"] = round(max(self.audio_clock, seg["start_time_seconds"]), 3)
                shown["character_end_index"] = len(self.timeline.chars)
            overlaps = start is None or stop is None or (
                seg["start_time_seconds"] <= stop and shown["end_time_seconds"] >= start)
            if overlaps:
                out.append(shown)
        return out

    def on_gradium(self, msg: dict[str, Any]) -> list[Event]:
        if msg.get("type") == gradium.SEGMENT:
            start = float(msg.get("start_s") or 0.0)
            self._close_last(start)
            chars = len(self.timeline.chars)
            self.voice_segments.append({
                "voice_id": msg.get("voice_id"),
                "dialogue_input_index": int(msg.get("index") or 0),
                "start_time_seconds": round(start, 3),
                "end_time_seconds": None,
                # the timeline puts a space before the next word: the segment starts after it
                "character_start_index": chars + 1 if chars else 0,
                "character_end_index": None,
            })
            return []
        events = super().on_gradium(msg)
        if msg.get("type") == gradium.END_OF_STREAM:
            self._close_last(self.audio_clock)
        for name, fields in events:
            if name == "audio":
                fields["voice_segments"] = self._snapshot(fields.get("start_s"), fields.get("stop_s"))
            elif name == "complete":
                fields["voice_segments"] = self._snapshot(None, None)
        return events
