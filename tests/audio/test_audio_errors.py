"""Bad input and impossible targets raise AudioError (and only AudioError), with a client-safe message."""

from __future__ import annotations

import contextlib
import os
import random

import pytest

from gateway.audio.formats import (
    AAC,
    FLAC,
    MP3,
    MP4,
    OGG,
    OPUS,
    PCM_S16LE,
    RAW,
    VORBIS,
    WAV,
    WEBM,
    AudioFormat,
    pcm16,
)
from gateway.audio.transcode import AudioError, make_transcoder

from .kit import stream
from .test_audio_decode import CASES, fixture

NOISE = bytes(os.urandom(20000))


def _break_page_sync(data: bytes) -> bytes:
    at = data.find(b"OggS", len(data) // 2)
    return data[:at] + b"OggX" + data[at + 4 :]


BAD_INPUTS = [
    ("noise-sniffed", None, NOISE),
    ("text-sniffed", None, b"<html><body>not audio</body></html>" * 20),
    ("noise-as-mp3", AudioFormat(MP3, RAW, 44100), NOISE),
    ("noise-as-aac", AudioFormat(AAC, RAW, 24000), NOISE),
    ("noise-as-flac", AudioFormat(FLAC, RAW, 16000), NOISE),
    ("noise-as-ogg", AudioFormat(OPUS, OGG, 48000), NOISE),
    ("noise-as-webm", AudioFormat(OPUS, WEBM, 48000), NOISE),
    ("noise-as-mp4", AudioFormat(AAC, MP4, 44100), NOISE),
    ("noise-as-wav", AudioFormat(PCM_S16LE, WAV, 16000), NOISE),
    ("ogg-lost-sync", AudioFormat(OPUS, OGG, 48000), _break_page_sync(fixture("ogg_opus"))),
    ("truncated-mp4", AudioFormat(AAC, MP4, 24000), fixture("m4a")[:3000]),
    ("webm-garbage-after-header", AudioFormat(OPUS, WEBM, 48000), fixture("webm_opus")[:300] + b"\x00" * 64),
    ("flac-garbage-frames", AudioFormat(FLAC, RAW, 16000), fixture("flac")[:100] + b"\x00" * 2_000_000),
]


@pytest.mark.parametrize(("name", "src", "data"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_corrupt_input_raises_audio_error(name: str, src: AudioFormat | None, data: bytes) -> None:
    with pytest.raises(AudioError) as info:
        stream(src, pcm16(24000), data, 1001)
    message = str(info.value)
    assert message and "Errno" not in message and "avcodec" not in message


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (pcm16(24000), AudioFormat(OPUS, RAW, 48000)),  # Opus needs a container
        (pcm16(24000), AudioFormat(VORBIS, OGG, 48000)),  # input only
        (pcm16(24000), AudioFormat(AAC, MP4, 48000)),  # MP4 is input only
        (pcm16(24000), AudioFormat(MP3, RAW, 12345)),  # not an mp3 rate
        (pcm16(24000), AudioFormat(OPUS, OGG, 44100)),  # not an Opus rate
        (pcm16(24000), AudioFormat(MP3, WAV, 44100)),
        (AudioFormat(OPUS, RAW, 48000), pcm16(24000)),  # raw Opus packets cannot be framed
        (None, AudioFormat(MP3, RAW, 12345)),
    ],
)
def test_impossible_conversions_fail_up_front(src: AudioFormat | None, dst: AudioFormat) -> None:
    with pytest.raises(AudioError):
        make_transcoder(src, dst)


def test_one_damaged_packet_in_a_live_stream_is_skipped() -> None:
    """A glitch beats a dropped call: a few bad mp3 frames mid-stream do not end the stream."""
    data = fixture("mp3")
    mid = len(data) // 2
    damaged = data[:mid] + b"\xff\xfb\x90\x00" + os.urandom(300) + data[mid:]
    out = stream(AudioFormat(MP3, RAW, 44100), pcm16(24000), damaged, 1001)
    assert len(out.data) > 40000


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_mutated_inputs_raise_nothing_but_audio_error(name: str) -> None:
    """A seeded mini-fuzz: flipped bytes, truncation, spliced garbage, in odd chunkings."""
    rng = random.Random(name)
    data = fixture(name)
    src = next(c[1] for c in CASES if c[0] == name)
    for _ in range(6):
        mutated = bytearray(data)
        kind = rng.randrange(3)
        if kind == 0:
            for _ in range(rng.randint(1, 20)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        elif kind == 1:
            del mutated[rng.randrange(len(mutated)) :]
        else:
            at = rng.randrange(len(mutated))
            mutated[at:at] = rng.randbytes(rng.randint(1, 500))
        for declared in (src, None):
            with contextlib.suppress(AudioError):  # any other exception fails the test
                stream(declared, pcm16(24000), bytes(mutated), rng.choice([1, 97, 1001]))


def test_audio_error_is_a_value_error() -> None:
    assert issubclass(AudioError, ValueError)
