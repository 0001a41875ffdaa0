"""Cheap STT for load tests: replay the answer already computed for the same audio.

Benchmarks send the same clip on hundreds of streams; decoding tones for each of them takes a core
and hides the gateway. The engine comes in two halves (`stt.py`): `SttAudio` turns audio into frame
labels, a function of the audio alone and the costly part, and `SttWords` turns those labels and the
client's flushes into messages, cheaply. The cache mirrors them:

- an audio trie per input format, an edge per `audio` payload as sent (and one for the end of input)
  from the request's start, holding what `SttAudio` made of it. Flushes are not in it: where they land
  relative to the audio (one frame earlier or later under load) changes nothing here;
- states, each an audio trie node with an `SttWords` snapshot, interned, with an edge per event (`audio`
  payload, `flush`, end of input) holding the messages the engine answered and the state after it.

A request on a known edge costs a dict lookup. On an unknown one the word half is restored from the
state's snapshot and run for real, over the audio edge's labels: a flush at a new position decodes no
audio. A flush's effect on the word half is short-lived (the word it ended would have ended anyway, the
words it released would have been released), so the states after it soon equal known ones and the
request is answered from edges again. Only audio never seen after that prefix is decoded, by an
`SttAudio` rebuilt from the trie path. Both halves are the real engine's code, run on the same inputs:
the answers are those of decoding, whatever the interleaving.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Hashable, Sequence
from typing import Any

from aiohttp import web

from gateway.emulator.protocol import UNSUPPORTED, GradiumError, SttSetup
from gateway.emulator.stt import Op, SttAudio, SttWords, WordsSnapshot

Message = dict[str, Any]
FLUSH = ("flush",)
FINISH = ("finish",)
Key = Hashable  # an `audio` payload as sent (base64 text), FLUSH or FINISH


class _Audio:
    """A node of the audio trie: a request's audio from its start up to here."""

    __slots__ = ("audio_s", "edges", "key", "parent", "states")

    def __init__(self, parent: _Audio | None, key: Key, audio_s: float) -> None:
        self.parent, self.key, self.audio_s = parent, key, audio_s
        self.edges: dict[Key, tuple[tuple[Op, ...], _Audio]] = {}
        self.states: dict[WordsSnapshot, _State] = {}  # the word half's states met at this point of the audio

    def path(self) -> list[Key]:
        keys: list[Key] = []
        node: _Audio | None = self
        while node is not None and node.parent is not None:
            keys.append(node.key)
            node = node.parent
        return keys[::-1]


class _State:
    __slots__ = ("audio", "edges", "words")

    def __init__(self, audio: _Audio, words: WordsSnapshot) -> None:
        self.audio, self.words = audio, words
        self.edges: dict[Key, tuple[tuple[Message, ...], _State]] = {}


class ReplayCache:
    def __init__(self, max_nodes: int = 50_000) -> None:
        self.max_nodes = max_nodes
        self.nodes = 0  # entries kept: audio edges, states, state edges (each one payload's worth)
        self.hits = 0  # events answered from a state's edge
        self.misses = 0  # events answered by running the word half (restored from a snapshot)
        self.decodes = 0  # audio payloads decoded for real (new audio, rebuilds, a full cache)
        self.rebuilds = 0  # audio halves rebuilt from a request's start to decode new audio
        self._roots: dict[Hashable, _Audio] = {}

    def audio_root(self, setup: SttSetup) -> _Audio:
        node = self._roots.get(setup.input_format)
        if node is None:
            node = self._roots[setup.input_format] = _Audio(None, None, 0.0)
        return node

    def room(self) -> bool:
        return self.nodes < self.max_nodes

    def state(self, audio: _Audio, words: WordsSnapshot) -> _State | None:
        """The state for this audio and word half, made if new and there is room."""
        state = audio.states.get(words)
        if state is None and self.room():
            state = audio.states[words] = _State(audio, words)
            self.nodes += 1
        return state

    def engine(self, setup: SttSetup) -> ReplayingEngine:
        return ReplayingEngine(self, setup)

    def counters(self) -> dict[str, int]:
        return {"nodes": self.nodes, "max_nodes": self.max_nodes, "hits": self.hits, "misses": self.misses,
                "decodes": self.decodes, "rebuilds": self.rebuilds}

    def reset_counters(self) -> None:
        self.hits = self.misses = self.decodes = self.rebuilds = 0


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
        words = SttWords(setup.delay_in_frames)
        # Where the request is: its audio trie node (None: off the trie, cache full; `_front` has it) and
        # its state (None: off the states, cache full; `_words` has it).
        self._audio: _Audio | None = cache.audio_root(setup)
        self._at: _State | None = cache.state(self._audio, words.snapshot())
        self._words: SttWords | None = words if self._at is None else None
        self._front: SttAudio | None = None  # the audio half, once this request's audio had to be decoded

    @property
    def audio_seconds(self) -> float:
        if self._audio is not None:
            return self._audio.audio_s
        assert self._front is not None
        return self._front.time_s

    def feed_b64(self, audio: object) -> list[Message]:
        if not isinstance(audio, str):
            decode_audio(audio)  # raises the protocol error
        return self._event(audio)

    def flush(self) -> list[Message]:
        return self._event(FLUSH)

    def finish(self) -> list[Message]:
        return self._event(FINISH)

    def _event(self, key: Key) -> list[Message]:
        cache, at = self._cache, self._at
        if at is not None:
            edge = at.edges.get(key)
            if edge is not None:
                cache.hits += 1
                msgs, self._at = edge
                if key is not FLUSH:
                    self._audio = self._at.audio
                    self._front = None  # behind now; rebuilt from the trie if new audio ever follows
                return [dict(m) for m in msgs]  # the session stamps client_req_id on its copy
        cache.misses += 1
        words = self._words if at is None else SttWords.restore(at.words)
        assert words is not None
        out = words.flush() if key is FLUSH else words.apply(self._ops(key))
        self._at, self._words = None, words
        # Back on the states when this one is known (or can be kept): a flush's effect soon wears off.
        nxt = cache.state(self._audio, words.snapshot()) if self._audio is not None else None
        if nxt is not None:
            if at is not None and cache.room():
                at.edges[key] = (tuple(dict(m) for m in out), nxt)
                cache.nodes += 1
            self._at, self._words = nxt, None
        return out

    def _ops(self, key: Key) -> Sequence[Op]:
        """What the audio half makes of this payload (or of the end of input): kept, or decoded now."""
        audio = self._audio
        if audio is not None:
            edge = audio.edges.get(key)
            if edge is not None:
                ops, self._audio = edge
                self._front = None
                return ops
        data = b"" if key is FINISH else decode_audio(key)  # a bad payload fails before any decoding
        front = self._front
        if front is None:
            assert audio is not None
            front = self._front = self._rebuild(audio)
        self._cache.decodes += 1
        ops = front.finish() if key is FINISH else front.feed(data)
        if audio is not None and self._cache.room():
            child = _Audio(audio, key, front.time_s)
            audio.edges[key] = (tuple(ops), child)
            self._cache.nodes += 1
            self._audio = child
        else:
            self._audio = None
        return ops

    def _rebuild(self, audio: _Audio) -> SttAudio:
        front = SttAudio(self._setup.audio_format)
        path = audio.path()
        for key in path:
            front.feed(decode_audio(key))
        if path:
            self._cache.rebuilds += 1
            self._cache.decodes += len(path)
        return front


REPLAY = web.AppKey("emulator_stt_replay", ReplayCache)
