"""`stt_collect`: a whole recording's Gradium STT messages -> one `complete` event.

For batch endpoints (Deepgram prerecorded, ElevenLabs and Cartesia speech-to-text): every word with
its times, the transcript, sentences (split on sentence-final punctuation) and utterances (split on
pauses of at least `utt_split_s`), the audio's duration and SHA-256. The provider's shape is in the
mapping's `render.complete` template.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.mapping.transforms.base import Event, EventTransform, Options, SessionInfo, register
from gateway.mapping.transforms.stt_segments import SENTENCE_END, Word
from gateway.upstream import protocol as gradium


class CollectOptions(Options):
    punctuate: bool = True
    smart_format: bool = False
    utt_split_s: float = 0.8
    language: str | None = None


@register
class SttCollect(EventTransform):
    name = "stt_collect"
    Options = CollectOptions
    EVENTS = {
        "complete": frozenset({"transcript", "confidence", "words", "sentences", "utterances", "duration",
                               "sha256", "languages"}),
    }

    def __init__(self, info: SessionInfo, options: CollectOptions) -> None:  # type: ignore[override]
        super().__init__(info, options)
        self.o = options
        self.punctuate = options.punctuate or options.smart_format
        self.words: list[Word] = []
        self.clock = 0.0
        self.sha = hashlib.sha256()
        self.sentence_start = True

    def on_action(self, action: str, fields: dict[str, Any]) -> list[Event]:
        if action == "audio":
            self.sha.update(fields.get("audio") or b"")
        return []

    def on_gradium(self, msg: dict[str, Any]) -> list[Event]:
        kind = msg.get("type")
        if kind == gradium.TEXT:
            raw = str(msg.get("text") or "").strip()
            if raw:
                self.words.append(Word(raw, float(msg.get("start_s") or self.clock),
                                       self.sentence_start and self.punctuate))
                self.sentence_start = raw.endswith(SENTENCE_END)
        elif kind == gradium.END_TEXT:
            if self.words and msg.get("stop_s") is not None:
                self.words[-1].end = max(self.words[-1].start, float(msg["stop_s"]))
        elif kind == gradium.STEP:
            self.clock = max(self.clock, float(msg.get("total_duration_s") or 0.0))
        elif kind == gradium.END_OF_STREAM:
            return [("complete", self._complete())]
        return []

    def _group(self, split: Any) -> list[dict[str, Any]]:
        groups: list[list[Word]] = []
        for i, w in enumerate(self.words):
            if not groups or split(self.words[i - 1], w):
                groups.append([])
            groups[-1].append(w)
        key = "punctuated" if self.punctuate else "text"
        return [
            {
                "transcript": " ".join(getattr(w, key) for w in g),
                "start": round(g[0].start, 3),
                "end": round(g[-1].end, 3),
                "words": [w.as_dict() for w in g],
                "num_words": len(g),
                "sentences": self._sentences(g, key),
                "id": i,
            }
            for i, g in enumerate(groups)
        ]

    @staticmethod
    def _sentences(words: list[Word], key: str) -> list[dict[str, Any]]:
        """A group's words split after sentence-final punctuation (Deepgram paragraphs' `sentences`)."""
        out: list[dict[str, Any]] = []
        cur: list[Word] = []
        for w in words:
            cur.append(w)
            if w.punctuated.endswith(SENTENCE_END) or w is words[-1]:
                out.append({"text": " ".join(getattr(x, key) for x in cur), "start": round(cur[0].start, 3),
                            "end": round(cur[-1].end, 3)})
                cur = []
        return out

    def _complete(self) -> dict[str, Any]:
        key = "punctuated" if self.punctuate else "text"
        duration = max(self.clock, self.words[-1].end if self.words else 0.0)
        return {
            "transcript": " ".join(getattr(w, key) for w in self.words),
            "confidence": 0.99 if self.words else 0.0,
            "words": [w.as_dict() for w in self.words],
            "sentences": self._group(lambda prev, w: prev.punctuated.endswith(SENTENCE_END)),
            "utterances": self._group(lambda prev, w: w.start - prev.end >= self.o.utt_split_s),
            "duration": round(duration, 3),
            "sha256": self.sha.hexdigest(),
            "languages": [self.o.language] if self.o.language else [],
        }
