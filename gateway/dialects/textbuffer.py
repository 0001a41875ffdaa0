"""Text streamed to Gradium TTS must arrive as whole words.

Gradium joins consecutive `text` messages with one space, so a word split across two client
messages ("Hel", "lo ") would be spoken as two. Clients of other providers stream LLM tokens that
split words freely; this buffer forwards text up to the last whitespace and keeps the rest until
more arrives, a flush, or the end of input.
"""

from __future__ import annotations


class WordBuffer:
    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = ""

    def push(self, text: str) -> str | None:
        """Complete words ready to send, or None when everything is still mid-word."""
        if not text:
            return None
        data = self.pending + text
        cut = max(data.rfind(" "), data.rfind("\n"), data.rfind("\t"))
        if cut < 0:
            self.pending = data
            return None
        ready, self.pending = data[:cut], data[cut + 1 :]
        ready = ready.strip()
        return ready or None

    def drain(self) -> str | None:
        rest, self.pending = self.pending.strip(), ""
        return rest or None
