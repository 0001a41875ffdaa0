"""Gradium's streaming vocabulary on the gateway's side: the messages it sends Gradium, built in one place.

Message types are constants shared with the emulator's reading of them (`gateway/emulator/`); the wire
format is specs/gradium.md §3. Gradium TTS joins consecutive `text` messages with a space and renders
everything before an inline `<flush>` tag at once.
"""

from __future__ import annotations

import base64
from typing import Any, Final

# message types
SETUP: Final = "setup"
READY: Final = "ready"
TEXT: Final = "text"
AUDIO: Final = "audio"
FLUSH: Final = "flush"
FLUSHED: Final = "flushed"
END_OF_STREAM: Final = "end_of_stream"
ERROR: Final = "error"

INLINE_FLUSH: Final = "<flush>"  # TTS: a tag in the text, not a message


def setup(fields: dict[str, Any], *, multiplexed: bool = False) -> dict[str, Any]:
    msg = {"type": SETUP, **fields}
    if multiplexed:
        msg["close_ws_on_eos"] = False  # the socket outlives each request on it
    return msg


def text(value: str) -> dict[str, Any]:
    return {"type": TEXT, "text": value}


def text_flush(rest: str | None) -> dict[str, Any]:
    """TTS: the rest of the buffered text, rendered now (Gradium's inline flush)."""
    return text(f"{rest} {INLINE_FLUSH}" if rest else INLINE_FLUSH)


def audio(pcm: bytes) -> dict[str, Any]:
    return {"type": AUDIO, "audio": base64.b64encode(pcm).decode()}


def flush(flush_id: int) -> dict[str, Any]:
    return {"type": FLUSH, "flush_id": flush_id}


def end_of_stream() -> dict[str, Any]:
    return {"type": END_OF_STREAM}
