"""Text streamed to Gradium TTS must arrive as whole words.

Gradium joins consecutive `text` messages with one space, so a word split across two client
messages ("Hel", "lo ") would be spoken as two. Clients of other providers stream LLM tokens that
split words freely; this buffer forwards text up to the last whitespace and keeps the rest until
more arrives, a flush, or the end of input.

With a `schedule` (ElevenLabs `chunk_length_schedule`), complete words are also held until they
reach the next character count of the schedule (the last count repeats), and `trigger` (ElevenLabs
`try_trigger_generation`) releases them early once the smallest count is reached. Without one,
words go out as soon as they are complete, which is what Gradium streams best.
"""

from __future__ import annotations

from collections.abc import Sequence


class WordBuffer:
    __slots__ = ("held", "pending", "schedule", "step")

    def __init__(self, schedule: Sequence[int] | None = None) -> None:
        self.pending = ""
        self.held = ""  # complete words waiting for the schedule
        self.schedule = tuple(schedule) if schedule else None
        self.step = 0

    def push(self, text: str, trigger: bool = False) -> str | None:
        """Complete words ready to send, or None when everything is still mid-word (or scheduled)."""
        ready = self._words(text) if text else None
        if self.schedule is None:
            return ready
        if ready:
            self.held = f"{self.held} {ready}" if self.held else ready
        if not self.held:
            return None
        due = self.schedule[min(self.step, len(self.schedule) - 1)]
        if len(self.held) >= due or (trigger and len(self.held) >= min(self.schedule)):
            out, self.held = self.held, ""
            self.step += 1
            return out
        return None

    def _words(self, text: str) -> str | None:
        data = self.pending + text
        cut = max(data.rfind(" "), data.rfind("\n"), data.rfind("\t"))
        if cut < 0:
            self.pending = data
            return None
        ready, self.pending = data[:cut], data[cut + 1 :]
        ready = ready.strip()
        return ready or None

    def drain(self) -> str | None:
        """Everything buffered (a flush or the end of input); the schedule starts over."""
        rest = " ".join(p for p in (self.held, self.pending.strip()) if p)
        self.held = self.pending = ""
        self.step = 0
        return rest or None
