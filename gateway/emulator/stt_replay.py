"""Cheap STT for load tests: replay the answer already computed for the same audio.

Benchmarks send the same clip on hundreds of streams; decoding tones for each of them takes a core
and hides the gateway. The replay cache is a trie over a request's events from its start (`setup`
fields that change the answer, then each `audio` payload as sent, `flush`, end of input). An edge
holds the messages the real engine produced for that event. A request walking a known path costs a
dict lookup per message and never decodes its audio; at the first unknown event it rebuilds a real
`SttEngine` by replaying the path's audio into it, then decodes for real and extends the trie while
it is under `max_nodes`. The answer is therefore always what decoding would have said.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Hashable
from typing import Any

from aiohttp import web

from gateway.emulator.protocol import UNSUPPORTED, GradiumError, SttSetup
from gateway.emulator.stt import SttEngine

Message = dict[str, Any]
FLUSH = ("flush",)
FINISH = ("finish",)


class _Node:
    __slots__ = ("audio_s", "edges")

    def __init__(self, audio_s: float = 0.0) -> None:
        self.audio_s = audio_s
        self.edges: dict[Hashable, tuple[Hashable, tuple[Message, ...], _Node]] = {}


class ReplayCache:
    def __init__(self, max_nodes: int = 50_000) -> None:
        self.max_nodes = max_nodes
        self.nodes = 0
        self.hits = 0
        self.misses = 0
        self._roots: dict[Hashable, _Node] = {}

    def root(self, setup: SttSetup) -> _Node:
        key = (setup.input_format, setup.delay_in_frames)
        node = self._roots.get(key)
        if node is None:
            node = self._roots[key] = _Node()
        return node

    def engine(self, setup: SttSetup) -> ReplayingEngine:
        return ReplayingEngine(self, setup)


def decode_audio(audio: object) -> bytes:
    if not isinstance(audio, str):
        raise GradiumError(UNSUPPORTED, "audio must be a base64 string")
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise GradiumError(UNSUPPORTED, "audio is not valid base64") from None


class ReplayingEngine:
    """The `SttEngine` interface with base64 input, answered from the cache while it can."""

    def __init__(self, cache: ReplayCache, setup: SttSetup) -> None:
        self._cache = cache
        self._setup = setup
        self._node: _Node | None = cache.root(setup)  # None: off the trie (cache full)
        self._path: list[Hashable] = []  # keys walked so far, to rebuild an engine on a miss
        self._engine: SttEngine | None = None
        self._audio_s = 0.0

    @property
    def audio_seconds(self) -> float:
        return self._engine.audio_seconds if self._engine is not None else self._audio_s

    def feed_b64(self, audio: object) -> list[Message]:
        if not isinstance(audio, str):
            decode_audio(audio)  # raises the protocol error
        return self._event(audio, lambda e: e.feed_audio(decode_audio(audio)))  # type: ignore[arg-type]

    def flush(self) -> list[Message]:
        return self._event(FLUSH, SttEngine.flush)

    def finish(self) -> list[Message]:
        return self._event(FINISH, SttEngine.finish)

    def _event(self, key: Hashable, apply: Callable[[SttEngine], list[Message]]) -> list[Message]:
        node = self._node
        if self._engine is None and node is not None:
            edge = node.edges.get(key)
            if edge is not None:
                stored_key, msgs, child = edge
                self._cache.hits += 1
                self._path.append(stored_key)
                self._node, self._audio_s = child, child.audio_s
                return [dict(m) for m in msgs]  # the session stamps client_req_id on its copy
            self._cache.misses += 1
            self._engine = self._rebuild()
        assert self._engine is not None
        out = apply(self._engine)
        if node is not None and self._cache.nodes < self._cache.max_nodes:
            child = _Node(self._engine.audio_seconds)
            node.edges[key] = (key, tuple(dict(m) for m in out), child)
            self._cache.nodes += 1
            self._node = child
        else:
            self._node = None
        self._path.clear()  # only needed until the engine exists
        return out

    def _rebuild(self) -> SttEngine:
        engine = SttEngine(self._setup)
        for key in self._path:
            if key is FLUSH or key == FLUSH:
                engine.flush()
            else:
                engine.feed_audio(decode_audio(key))
        self._path.clear()
        return engine


REPLAY = web.AppKey("emulator_stt_replay", ReplayCache)
