"""The event-transform interface: Gradium messages in, named dialect events out.

A transform holds the per-session state a dialect needs (transcoder, alignment, turn logic) and
does no I/O, so it can be tested without a network. The route's `render` templates give each event
its provider shape; the transport (HTTP body, NDJSON, SSE, WebSocket) only frames them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict

from gateway.audio.formats import AudioFormat

Event = tuple[str, dict[str, Any]]
# event name -> the fields it carries: what a route's `render` templates may name (checked at load time)
Events = dict[str, frozenset[str]]
# The name of the event a transform emits to ask the runtime to send Gradium a message (e.g. an
# end-of-turn flush); its fields are the message. Never rendered; build it with `send_gradium`.
SEND_GRADIUM: Final = "@gradium"


def send_gradium(message: dict[str, Any]) -> Event:
    """The event that has the runtime send `message` to Gradium (while the request's input is open)."""
    return (SEND_GRADIUM, message)


@dataclass(slots=True)
class SessionInfo:
    request_id: str
    params: dict[str, Any]
    audio_out: AudioFormat | None = None  # what the client wants (TTS)
    gradium_out: AudioFormat | None = None  # what Gradium was asked to send (TTS)
    audio_in: AudioFormat | None = None  # what the client sends (STT); None: sniffed
    gradium_in: AudioFormat | None = None  # what Gradium is sent (STT)
    started: float = field(default_factory=time.monotonic)
    # State that outlives one Gradium request: on WebSocket routes, shared by the successive requests
    # of one context id on a socket (e.g. flush counters and a running clock across flushes).
    shared: dict[str, Any] = field(default_factory=dict)


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventTransform:
    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = Options
    # Every event this transform emits (`send_gradium` aside) and its fields.
    EVENTS: ClassVar[Events] = {}
    # True when `on_gradium` for audio messages does codec work worth a worker thread (PyAV releases
    # the GIL): the event loop keeps serving other sessions meanwhile.
    heavy: bool = False

    def __init__(self, info: SessionInfo, options: BaseModel) -> None:
        self.info = info

    def on_gradium(self, msg: dict[str, Any]) -> list[Event]:
        """One parsed Gradium message (ready, audio, text, end_text, step, flushed, end_of_stream)."""
        return []

    def on_action(self, action: str, fields: dict[str, Any]) -> list[Event]:
        """A client action the runtime performed (e.g. `flush` with its flush id)."""
        return []

    def on_audio(self, chunk: bytes) -> list[Event]:
        """A client audio chunk (a binary frame's bytes): what `on_action("audio", {"audio": chunk})` does,
        which it is unless a transform has a cheaper way (it runs once per client audio frame)."""
        return self.on_action("audio", {"audio": chunk})

    def prime(self) -> None:
        """Get ready for the first audio while Gradium is still working on it (open codecs); run where
        `heavy` work runs, and before the first `on_gradium`."""


TRANSFORMS: dict[str, type[EventTransform]] = {}


def register(cls: type[EventTransform]) -> type[EventTransform]:
    TRANSFORMS[cls.name] = cls
    return cls
