"""Recognising containers from their first bytes."""

from __future__ import annotations

import os

import pytest

from gateway.audio.formats import (
    AAC,
    FLAC,
    MP3,
    MP4,
    OGG,
    OPUS,
    PCM_F32LE,
    PCM_S16LE,
    RAW,
    VORBIS,
    WAV,
    WEBM,
    AudioFormat,
    pcm16,
)
from gateway.audio.sniff import sniff
from gateway.audio.transcode import sniff_format

from .kit import encode_file, pcm_bytes, stream, tone
from .test_audio_decode import fixture

EXPECTED = [
    ("wav", AudioFormat(PCM_S16LE, WAV, 16000)),
    ("ogg_opus", AudioFormat(OPUS, OGG, 48000)),
    ("ogg_opus_stereo", AudioFormat(OPUS, OGG, 48000, 2)),
    ("ogg_vorbis", AudioFormat(VORBIS, OGG, 44100, 2)),
    ("ogg_flac", AudioFormat(FLAC, OGG, 16000)),
    ("webm_opus", AudioFormat(OPUS, WEBM, 48000)),
    ("webm_vorbis", AudioFormat(VORBIS, WEBM, 44100, 2)),
    ("mp3", AudioFormat(MP3, RAW, 44100, 1, 128000)),
    ("mp3_stereo_22050", AudioFormat(MP3, RAW, 22050, 2, 64000)),
    ("aac_adts", AudioFormat(AAC, RAW, 24000)),
    ("flac", AudioFormat(FLAC, RAW, 16000)),
    ("flac_48000", AudioFormat(FLAC, RAW, 48000)),
    ("m4a_fragmented_stereo", AudioFormat(AAC, MP4, 44100, 2)),
]


@pytest.mark.parametrize(("name", "expected"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_sniff_each_container(name: str, expected: AudioFormat) -> None:
    head = fixture(name)[:4096]
    assert sniff_format(head) == expected
    found = sniff(head)
    assert found.complete and found.exact


def test_sniff_mp4_with_index_at_the_end_is_only_approximate() -> None:
    found = sniff(fixture("m4a")[:4096])
    assert found.format is not None and (found.format.encoding, found.format.container) == (AAC, MP4)
    assert found.complete and not found.exact


def test_sniff_our_own_outputs() -> None:
    data = pcm_bytes(tone(48000))
    for dst in (
        AudioFormat(OPUS, OGG, 48000, 1, 64000),
        AudioFormat(MP3, RAW, 44100, 1, 128000),
        AudioFormat(PCM_F32LE, WAV, 22050),
        AudioFormat(FLAC, RAW, 48000),
        AudioFormat(AAC, RAW, 24000),
        AudioFormat(OPUS, WEBM, 48000),
    ):
        head = stream(pcm16(48000), dst, data, 3840).data[:8192]
        got = sniff_format(head)
        assert got is not None
        assert (got.encoding, got.container, got.sample_rate, got.channels) == (
            dst.encoding,
            dst.container,
            dst.sample_rate,
            dst.channels,
        )


def test_sniff_needs_more_bytes_for_a_split_header() -> None:
    head = fixture("ogg_opus")
    assert not sniff(head[:8]).complete
    assert not sniff(head[:30]).complete
    assert sniff(head[:200]).complete
    early = sniff_format(head[:8])
    assert early is not None and early.container == OGG  # the container is known, the rest is a guess
    assert not sniff(head[:8], final=True).exact


def test_sniff_24bit_wav_is_not_exact() -> None:
    found = sniff(encode_file("wav", "pcm_s24le", 16000)[:200])
    assert found.format is not None and found.format.container == WAV
    assert not found.exact


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello world, this is not audio at all",
        pcm_bytes(tone(16000))[:4096],  # headerless PCM has no signature
        os.urandom(4096).replace(b"\xff", b"\x00"),
        b"\xff\xfb\x90\x00" + b"\x00" * 1000,  # one mp3-looking header, no second frame where due
        b"\x1aE\xdf\xa3garbage" + os.urandom(64),
    ],
    ids=["empty", "text", "raw-pcm", "random", "lone-mp3-sync", "broken-ebml"],
)
def test_sniff_rejects_non_audio(head: bytes) -> None:
    fmt = sniff_format(head)
    assert fmt is None or not sniff(head).exact
