"""Output appears while input streams in, and mid-stream flushes keep the stream going."""

from __future__ import annotations

import os

import pytest

from gateway.audio.formats import AAC, MP3, OGG, OPUS, RAW, WEBM, AudioFormat, pcm16
from gateway.audio.libav import ffmpeg_threads_forced
from gateway.audio.transcode import make_transcoder

from .kit import chunk_80ms, chunks, pcm_bytes, probe, stream, tone
from .test_audio_decode import fixture


@pytest.mark.parametrize(
    "dst",
    [
        AudioFormat(MP3, RAW, 44100, 1, 128000),
        AudioFormat(MP3, RAW, 22050, 1, 32000),
        AudioFormat(OPUS, OGG, 48000, 1, 64000),
        AudioFormat(AAC, RAW, 24000),
    ],
    ids=["mp3_44100", "mp3_22050", "opus", "aac"],
)
def test_encoders_emit_progressively(dst: AudioFormat) -> None:
    src = pcm16(48000)
    out = stream(src, dst, pcm_bytes(tone(48000, seconds=2.0)), chunk_80ms(src))
    feeds = len(out.outputs) - 1
    assert out.feeds_with_output >= feeds * 0.8, [len(o) for o in out.outputs]
    assert any(out.outputs[:3])  # first audio leaves within the first three chunks
    # The flush only carries the codec's tail (LAME keeps up to ~0.2 s at low bit rates).
    assert len(out.outputs[-1]) <= 0.3 * (dst.bit_rate or 64000) / 8 + 1000


def test_ogg_pages_from_our_encoder_decode_as_they_arrive() -> None:
    """The Gradium-like case: our own Ogg/Opus output fed back in the same 80 ms pieces."""
    src = pcm16(48000)
    ogg = stream(src, AudioFormat(OPUS, OGG, 48000), pcm_bytes(tone(48000)), chunk_80ms(src))
    tc = make_transcoder(AudioFormat(OPUS, OGG, 48000), pcm16(24000))
    outs = [tc.feed(piece) for piece in ogg.outputs]
    assert sum(1 for o in outs if o) >= len(outs) - 2


@pytest.mark.parametrize("name", ["mp3", "webm_opus", "ogg_opus", "flac", "aac_adts", "wav"])
def test_flush_mid_stream_then_continue(name: str) -> None:
    """Deepgram Finalize in the middle of a stream: what is decodable comes out, nothing is lost."""
    src = {
        "mp3": AudioFormat(MP3, RAW, 44100),
        "webm_opus": AudioFormat(OPUS, WEBM, 48000),
        "ogg_opus": AudioFormat(OPUS, OGG, 48000),
        "flac": AudioFormat("flac", RAW, 16000),
        "aac_adts": AudioFormat(AAC, RAW, 24000),
        "wav": None,
    }[name]
    data = fixture(name)
    full = stream(src, pcm16(24000), data, 1001).data
    tc = make_transcoder(src, pcm16(24000))
    half = len(data) // 2 + 3
    out = b"".join(tc.feed(c) for c in chunks(data[:half], 1001)) + tc.flush()
    out += b"".join(tc.feed(c) for c in chunks(data[half:], 1001)) + tc.flush()
    got = probe(out, pcm16(24000))
    assert abs(len(out) - len(full)) <= 2 * 2400  # at most ~0.1 s difference around the flush
    assert got.dominant_hz() == pytest.approx(probe(full, pcm16(24000)).dominant_hz(), abs=3)


def test_compressed_output_after_mid_stream_flush_stays_decodable() -> None:
    src = pcm16(24000)
    dst = AudioFormat(MP3, RAW, 24000, 1, 64000)
    data = pcm_bytes(tone(24000))
    tc = make_transcoder(src, dst)
    half = len(data) // 2
    out = tc.feed(data[:half]) + tc.flush() + tc.feed(data[half:]) + tc.flush()
    got = probe(out, container="mp3")
    assert got.duration == pytest.approx(1.0, abs=0.2)
    assert got.dominant_hz() == pytest.approx(440, abs=3)


@pytest.mark.parametrize(("rate", "bit_rate"), [(44100, 128000), (22050, 32000), (24000, 48000)])
def test_mp3_first_gradium_chunk_gives_bytes_at_once(rate: int, bit_rate: int) -> None:
    """Speech starts quiet: LAME's bit reservoir would hold the first frame until the next chunk came
    (80 ms later with a provider at real time). The first 80 ms chunk must give mp3 frames by itself,
    and the stream must stay one valid mp3 stream."""
    src, dst = pcm16(rate), AudioFormat(MP3, RAW, rate, 1, bit_rate)
    speech_like = tone(rate, seconds=1.0)
    speech_like[: rate // 10] = 0  # 100 ms of silence first, as speech starts
    out = stream(src, dst, pcm_bytes(speech_like), chunk_80ms(src))
    assert out.outputs[0], [len(o) for o in out.outputs[:3]]
    assert out.outputs[0][:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xfa")  # an mp3 frame sync
    got = probe(out.data, container="mp3")
    assert got.sample_rate == rate
    assert got.duration == pytest.approx(1.0, abs=0.1)
    assert got.dominant_hz() == pytest.approx(440, abs=3)


@pytest.mark.parametrize("dst", [AudioFormat(MP3, RAW, 44100, 1, 128000), AudioFormat(MP3, RAW, 22050, 1, 32000)])
def test_priming_opens_early_and_changes_no_byte(dst: AudioFormat) -> None:
    """`prime()` (called while Gradium prepares the first audio) opens the encoder ahead of the first
    chunk; the stream is byte for byte the one an unprimed transcoder gives (LAME is deterministic)."""
    src = pcm16(44100)
    data = pcm_bytes(tone(44100, seconds=0.5))
    plain = stream(src, dst, data, chunk_80ms(src)).data
    tc = make_transcoder(src, dst)
    tc.prime()
    tc.prime()  # idempotent
    assert tc._sink._ctx is not None  # type: ignore[attr-defined]  # opened before any sample
    primed = b"".join([tc.feed(c) for c in chunks(data, chunk_80ms(src))]) + tc.flush()
    assert primed == plain


@pytest.mark.parametrize("dst", [AudioFormat(OPUS, OGG, 48000, 1, 64000), pcm16(16000), pcm16(44100)],
                         ids=["opus", "pcm-resampled", "pcm-passthrough"])
def test_priming_other_outputs_is_harmless(dst: AudioFormat) -> None:
    src = pcm16(44100)
    tc = make_transcoder(src, dst)
    tc.prime()
    out = b"".join([tc.feed(c) for c in chunks(pcm_bytes(tone(44100, seconds=0.5)), chunk_80ms(src))]) + tc.flush()
    assert probe(out, dst).dominant_hz() == pytest.approx(440, abs=3)


def _threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread ids from /proc (Linux)")
@pytest.mark.parametrize("dst", [AudioFormat(MP3, RAW, 44100, 1, 128000), AudioFormat(OPUS, OGG, 48000, 1, 64000)],
                         ids=["mp3", "opus"])
def test_encoding_starts_no_ffmpeg_thread(dst: AudioFormat) -> None:
    """PyAV cuts a stream into the encoder's frames with a filter graph built on the first chunk, and
    FFmpeg gave every graph its own pool of threads, started then (the first chunk waited for them) and
    joined at the end. The codec threads are ours: FFmpeg must not start any, and the stream stays whole."""
    assert ffmpeg_threads_forced
    src = pcm16(dst.sample_rate)
    data = pcm_bytes(tone(dst.sample_rate, seconds=0.5))
    tc = make_transcoder(src, dst)
    before = _threads()
    tc.prime()
    parts = [tc.feed(c) for c in chunks(data, chunk_80ms(src))]
    started = _threads() - before
    out = b"".join(parts) + tc.flush()
    assert not started
    assert parts[0] or dst.encoding != MP3  # LAME: bytes from the first chunk
    got = probe(out, dst)
    assert got.duration == pytest.approx(0.5, abs=0.06)
    assert got.dominant_hz() == pytest.approx(440, abs=3)
