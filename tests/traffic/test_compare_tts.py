"""TTS comparison on synthetic audio: levels of a known sine, constructed silences, formats, contexts."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.audio.formats import MP3, PCM_S16LE, RAW, WAV, AudioFormat, pcm16
from gateway.audio.transcode import make_transcoder
from gateway.traffic.audio_metrics import decode, loudness_lufs, signal_metrics
from gateway.traffic.compare import compare_pair
from gateway.traffic.trace import PairTrace

RATE = 24000
ASKED = pcm16(RATE)


def sine(seconds: float, rms_dbfs: float = -20.0, freq: float = 997.0, rate: int = RATE) -> np.ndarray:
    amp = np.sqrt(2) * 10 ** (rms_dbfs / 20)
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), np.float32)


def s16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def encode(x: np.ndarray, dst: AudioFormat) -> bytes:
    tc = make_transcoder(ASKED, dst)
    return tc.feed(s16(x)) + tc.flush()


def _pair(primary: str = "gradium", shadow: str = "legacy", asked: AudioFormat = ASKED) -> PairTrace:
    return PairTrace.open(tenant="acme", provider="elevenlabs", route="tts_ws", kind="tts", transport="ws",
                          primary_side=primary, shadow_side=shadow, audio_format=asked)  # type: ignore[arg-type]


def test_sine_at_minus_20_dbfs_reads_minus_20() -> None:
    m = signal_metrics(sine(2.0), RATE)
    assert m["rms_dbfs"] == pytest.approx(-20.0, abs=0.05)
    assert m["peak_dbfs"] == pytest.approx(-16.99, abs=0.05)
    assert m["lufs"] == pytest.approx(-20.0, abs=0.3)  # BS.1770: a 1 kHz sine reads its RMS level
    assert m["clip_ratio"] == 0.0 and m["silence_ratio"] == 0.0


def test_constructed_silences() -> None:
    x = np.concatenate([silence(0.5), sine(1.0), silence(0.26)])
    m = signal_metrics(x, RATE)
    assert m["lead_ms"] == pytest.approx(500, abs=20)
    assert m["trail_ms"] == pytest.approx(260, abs=20)
    assert m["silence_ratio"] == pytest.approx(0.76 / 1.76, abs=0.02)
    assert m["duration_s"] == pytest.approx(1.76)


def test_noise_floor_and_clipping() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(RATE) * 10 ** (-60 / 20)).astype(np.float32)
    x = np.concatenate([noise, sine(1.0), noise])
    # frames are measured at 16 kHz: resampling keeps 2/3 of white noise's power (-1.76 dB)
    assert signal_metrics(x, RATE)["noise_floor_dbfs"] == pytest.approx(-61.76, abs=1.0)
    square = np.sign(sine(1.0)).astype(np.float32)
    m = signal_metrics(square, RATE)
    assert m["clip_ratio"] > 0.9 and m["peak_dbfs"] == pytest.approx(0.0, abs=0.01)


def test_short_clips_have_no_loudness() -> None:
    assert signal_metrics(sine(0.3), RATE)["lufs"] is None
    assert signal_metrics(np.zeros(0, np.float32), RATE)["duration_s"] == 0.0


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_loudness_is_pyloudnorms_integrated_loudness(rate: int) -> None:
    """The vectorised meter reads what pyloudnorm's own loop reads: the same filters, block bounds (lengths
    that round either way, a last block past the end), both gates (silent and quiet stretches), no loudness
    for digital silence or for signals all under the absolute gate."""
    import pyloudnorm

    rng = np.random.default_rng(rate)
    for seconds in (0.4, 0.45, 1.0, 2.37, 4.66, 5.0):
        n = int(seconds * rate)
        t = np.arange(n) / rate
        signals = {
            "noise": rng.standard_normal(n) * 0.1,
            "tone": 0.3 * np.sin(2 * np.pi * 440 * t),
            "speech-like": rng.standard_normal(n) * 0.2 * (np.sin(2 * np.pi * 0.7 * t) > 0.3)
            + rng.standard_normal(n) * 1e-3 * (t > 1),
            "under the absolute gate": rng.standard_normal(n) * 1e-5,
            "digital silence": np.zeros(n),
        }
        for name, x in signals.items():
            x = x.astype(np.float32)
            want = float(pyloudnorm.Meter(rate).integrated_loudness(x.astype(np.float64)))
            got = loudness_lufs(x, rate)
            if not np.isfinite(want):
                assert got is None, (rate, seconds, name)
            else:
                assert got == pytest.approx(want, abs=1e-9), (rate, seconds, name)


def test_decode_sniffs_containers_and_needs_the_asked_format_for_raw_pcm() -> None:
    wav = encode(sine(1.0), AudioFormat(PCM_S16LE, WAV, RATE))
    d = decode(wav, None)
    assert d.fmt == AudioFormat(PCM_S16LE, WAV, RATE) and d.samples.size == RATE
    d = decode(s16(sine(1.0)), ASKED)
    assert d.fmt == ASKED and d.samples.size == RATE
    assert decode(s16(sine(3.0)), ASKED, max_s=1.0).truncated


def test_pair_metrics_durations_loudness_and_formats() -> None:
    pair = _pair("gradium", "legacy")
    pair.primary.sent_text(11, t=100.0)
    pair.shadow.sent_text(11, t=105.0)
    pair.primary.audio(s16(sine(1.1, -23.0)), t=180.0)
    pair.shadow.audio(s16(sine(1.0, -20.0)), t=245.0)
    row = compare_pair(pair).row
    assert row["ttfa_ms_p"] == 80.0 and row["ttfa_ms_s"] == 140.0
    assert row["duration_ratio"] == pytest.approx(1.1, abs=1e-3)     # gradium / legacy
    assert row["lufs_delta"] == pytest.approx(-3.0, abs=0.3)
    assert row["format_match"] is True
    assert row["metrics"]["p"]["format"] == "pcm_s16le/raw/24000/1"


def test_a_leg_answering_in_another_format_is_a_mismatch_but_still_measured() -> None:
    pair = _pair("legacy", "gradium", asked=AudioFormat(PCM_S16LE, WAV, RATE))
    pair.primary.audio(encode(sine(1.0), AudioFormat(PCM_S16LE, WAV, RATE)))
    pair.shadow.audio(encode(sine(1.0), AudioFormat(MP3, RAW, RATE, bit_rate=64000)))
    row = compare_pair(pair).row
    assert row["format_match"] is False
    assert row["metrics"]["s"]["format"].startswith("mp3/raw/24000")
    assert row["duration_ratio"] == pytest.approx(1.0, abs=0.1)       # mp3 adds encoder padding


def test_undecodable_audio_is_flagged_not_raised() -> None:
    pair = _pair(asked=None)  # type: ignore[arg-type]
    pair.primary.audio(b"\x01\x02garbage" * 50)
    pair.shadow.audio(b"")
    row = compare_pair(pair).row
    assert "audio_undecodable" in row["flags"] and row["duration_ratio"] is None


def test_multi_context_sockets_yield_unit_rows_and_skip_interrupted_contexts() -> None:
    pair = _pair()
    for leg in (pair.primary, pair.shadow):
        leg.sent_text(5, ctx="a", t=0.0)
        leg.sent_text(5, ctx="b", t=10.0)
        leg.sent_control("clear", ctx="b", t=50.0)
    pair.primary.audio(s16(sine(1.0)), ctx="a", t=60.0)
    pair.shadow.audio(s16(sine(2.0)), ctx="a", t=90.0)
    pair.primary.audio(s16(sine(0.1)), ctx="b", t=70.0)
    pair.shadow.audio(s16(sine(0.7)), ctx="b", t=75.0)
    c = compare_pair(pair)
    assert [u["ctx"] for u in c.units] == ["a", "b"]
    assert all(u["started_at"] == pytest.approx(pair.started_at) for u in c.units)  # retention deletes them too
    a, b = c.units
    assert a["duration_ratio"] == pytest.approx(0.5) and not a["interrupted"]
    assert b["interrupted"] and b["duration_ratio"] is None
    assert c.row["duration_ratio"] == pytest.approx(0.5)  # gradium / legacy; the interrupted context is left out
    assert b["ttfa_ms_p"] == 60.0 and a["ttfa_ms_s"] == 90.0


def test_asr_round_trip_hook() -> None:
    pair = _pair("gradium", "legacy")
    pair.input_text = "hello brave new world"
    pair.primary.audio(s16(sine(1.0)))
    pair.shadow.audio(s16(sine(2.0)))
    heard: list[tuple[int, int]] = []

    def asr(x: np.ndarray, rate: int) -> str:
        heard.append((x.size, rate))
        return "hello brave new world" if x.size >= 16000 else "hello new world"

    row = compare_pair(pair, asr=asr).row
    assert heard == [(16000, 16000), (32000, 16000)]
    assert row["rt_wer_p"] == 0.0 and row["rt_wer_s"] == 0.0
    pair.primary.audio_buf.clear()
    pair.primary.audio(s16(sine(0.5)))
    row = compare_pair(pair, asr=asr).row
    assert row["rt_wer_p"] == pytest.approx(0.25) and row["metrics"]["rt_wer_delta"] == pytest.approx(0.25)
