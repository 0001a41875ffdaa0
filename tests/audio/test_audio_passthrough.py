"""Passthrough: no decode, no copy, the very same bytes object back."""

from __future__ import annotations

import pytest

from gateway.audio.formats import (
    ALAW,
    MULAW,
    OGG,
    OPUS,
    PCM_S16LE,
    RAW,
    WAV,
    AudioFormat,
    pcm16,
)
from gateway.audio.transcode import make_transcoder

from .kit import chunks, encode_file, pcm_bytes, tone
from .test_audio_decode import fixture


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (pcm16(16000), pcm16(16000)),
        (AudioFormat(MULAW, RAW, 8000), AudioFormat(MULAW, RAW, 8000)),
        (AudioFormat(ALAW, RAW, 8000), AudioFormat(ALAW, RAW, 8000)),
        (AudioFormat(PCM_S16LE, WAV, 48000), AudioFormat(PCM_S16LE, WAV, 48000)),
        (AudioFormat(OPUS, OGG, 48000), AudioFormat(OPUS, OGG, 48000, 1, 64000)),  # bit rate left open
    ],
)
def test_identity_returns_the_same_object(src: AudioFormat, dst: AudioFormat) -> None:
    tc = make_transcoder(src, dst)
    assert tc.passthrough
    for size in (1, 3, 1001, 3840):
        chunk = bytes(range(256)) * 20
        chunk = chunk[:size]
        assert tc.feed(chunk) is chunk
    assert tc.flush() == b""
    chunk = b"\x01\x02\x03"
    assert tc.feed(chunk) is chunk  # still fine after a flush


def test_different_bit_rates_are_not_passthrough() -> None:
    src, dst = AudioFormat(OPUS, OGG, 48000, 1, 32000), AudioFormat(OPUS, OGG, 48000, 1, 64000)
    assert not make_transcoder(src, dst).passthrough


def test_sniffed_match_becomes_passthrough() -> None:
    data = fixture("ogg_opus")
    tc = make_transcoder(None, AudioFormat(OPUS, OGG, 48000))
    assert not tc.passthrough
    parts = list(chunks(data, 1001))
    out = [tc.feed(parts[0])]
    assert tc.passthrough
    for part in parts[1:]:
        got = tc.feed(part)
        assert got is part
        out.append(got)
    out.append(tc.flush())
    assert b"".join(out) == data


def test_sniffed_wav_with_other_sample_width_is_converted() -> None:
    """24-bit WAV at the target rate looks like the target but is not the same bytes."""
    wav = encode_file("wav", "pcm_s24le", 16000, freq=1000)
    tc = make_transcoder(None, AudioFormat(PCM_S16LE, WAV, 16000))
    out = b"".join(tc.feed(c) for c in chunks(wav, 1001)) + tc.flush()
    assert not tc.passthrough
    assert out[:4] == b"RIFF" and len(out) == 44 + 16000 * 2


def test_pcm_identity_is_not_decoded() -> None:
    data = pcm_bytes(tone(24000))
    tc = make_transcoder(pcm16(24000), pcm16(24000))
    assert tc.feed(data) is data
