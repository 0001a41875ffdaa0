"""The tone codec on its own: exact round trips, streaming, level and noise robustness, VAD state."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gateway.emulator import tone_decoder, tones
from gateway.emulator.tone_decoder import ToneRecognizer

SENTENCE = "Hello world, this is a test. Will it all survive? Yes! 2026 numbers and don't bookkeeper aaa zzz"


def expected(text: str) -> str:
    return " ".join(tones.normalize_words(text))


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_round_trip_at_every_rate(rate: int) -> None:
    pcm, timings = tones.synthesize(SENTENCE, rate)
    assert pcm.dtype == np.int16
    assert tone_decoder.transcribe(pcm, rate) == expected(SENTENCE)
    assert [t.text for t in timings] == tones.normalize_words(SENTENCE)


def test_normalization_is_what_the_asr_returns() -> None:
    assert tones.normalize_words("Héllo, WORLD!  It's   e.g. fine; ok: — 42") == [
        "hello,",
        "world!",
        "it's",
        "eg.",
        "fine,",
        "ok,",
        "42",
    ]


def test_repeated_letters_survive() -> None:
    text = "aa aaa aaaa bookkeeper mississippi 1000"
    pcm, _ = tones.synthesize(text, 24000)
    assert tone_decoder.transcribe(pcm, 24000) == text
    # No two adjacent bursts share a frequency, which is what makes repeats gap-independent.
    for word in text.split():
        symbols = tones.encode_symbols(word)
        assert all(a != b for a, b in itertools.pairwise(symbols))
        assert tones.decode_symbols(symbols) == word


def test_timings_match_what_the_recognizer_hears() -> None:
    pcm, timings = tones.synthesize(SENTENCE, 24000)
    rec = ToneRecognizer(24000)
    words = rec.feed(pcm) + rec.flush()
    assert len(words) == len(timings)
    for heard, said in zip(words, timings, strict=True):
        assert heard.text == said.text
        assert abs(heard.start_s - said.start_s) < 0.03
        assert abs(heard.stop_s - said.stop_s) < 0.03


def test_pacing_is_roughly_speech() -> None:
    text = "the quick brown fox jumps over the lazy dog again and again"
    pcm, _ = tones.synthesize(text, 24000)
    per_word = len(pcm) / 24000 / len(text.split())
    assert 0.25 <= per_word <= 0.55


def test_sentence_end_pause_is_longer() -> None:
    _, timings = tones.synthesize("one two. three", 24000)
    gap_plain = timings[1].start_s - timings[0].stop_s
    gap_sentence = timings[2].start_s - timings[1].stop_s
    assert gap_sentence - gap_plain >= 0.3


def test_break_tag_inserts_silence_and_flush_is_stripped() -> None:
    plain, plain_t = tones.synthesize("one two", 24000)
    broken, broken_t = tones.synthesize('one <break time="1.5s" /> <flush> two', 24000)
    assert len(broken) - len(plain) == round(1.5 * 24000)
    assert broken_t[1].start_s - plain_t[1].start_s == pytest.approx(1.5, abs=1e-3)
    assert tone_decoder.transcribe(broken, 24000) == "one two"
    # Clamped to Gradium's 0.1-2.0 s range; milliseconds accepted.
    assert tones.parse('<break time="5s"/>') == [tones.Pause(2.0)]
    assert tones.parse("Hi — <flush> there") == [tones.Token("Hi", "hi"), tones.Flush(), tones.Token("there", "there")]
    assert tones.parse("<break time='300ms' />") == [tones.Pause(0.3)]


@pytest.mark.parametrize("chunk", [1, 7, 160, 1919, 4097])
def test_streaming_any_chunk_size(chunk: int) -> None:
    pcm, _ = tones.synthesize("streaming chunks, odd sizes. fine", 16000)
    rec = ToneRecognizer(16000)
    words = []
    for i in range(0, len(pcm), chunk):
        words += rec.feed(pcm[i : i + chunk])
    words += rec.flush()
    assert " ".join(w.text for w in words) == "streaming chunks, odd sizes. fine"


def test_words_arrive_while_streaming_not_only_at_the_end() -> None:
    pcm, timings = tones.synthesize("early words come out early", 24000)
    rec = ToneRecognizer(24000)
    first_seen_at = None
    for i in range(0, len(pcm), 480):
        if rec.feed(pcm[i : i + 480]) and first_seen_at is None:
            first_seen_at = (i + 480) / 24000
    assert first_seen_at is not None
    assert first_seen_at < timings[1].start_s  # "early" reported before "words" is spoken


@pytest.mark.parametrize(("gain", "noise"), [(0.03, 0.0), (0.03, 30.0), (1.0, 1000.0), (2.5, 0.0)])
def test_level_and_noise_robustness(gain: float, noise: float) -> None:
    pcm, _ = tones.synthesize(SENTENCE, 24000)
    rng = np.random.default_rng(7)
    x = pcm.astype(np.float64) * gain + rng.normal(0.0, noise, len(pcm)) if noise else pcm * gain
    x = np.clip(x, -32768, 32767).astype(np.int16)  # gain 2.5 clips hard: harmonics, not new tones
    assert tone_decoder.transcribe(x, 24000) == expected(SENTENCE)


def test_alignment_free_delay_and_padding() -> None:
    pcm, _ = tones.synthesize("shifted by codec delay", 24000)
    shifted = np.concatenate([np.zeros(1234, np.int16), pcm[:-17], np.zeros(5000, np.int16)])
    assert tone_decoder.transcribe(shifted, 24000) == "shifted by codec delay"


def test_flush_mid_stream_keeps_time_base_and_continues() -> None:
    first, _ = tones.synthesize("before", 24000)
    second, second_t = tones.synthesize("after", 24000)
    rec = ToneRecognizer(24000)
    words = rec.feed(first[:-100])  # flush lands inside the trailing silence
    words += rec.flush()
    assert [w.text for w in words] == ["before"]
    offset = (len(first) - 100) / 24000
    rest = np.concatenate([first[-100:], second])
    later = rec.feed(rest) + rec.flush()
    assert [w.text for w in later] == ["after"]
    assert later[0].start_s == pytest.approx(offset + 100 / 24000 + second_t[0].start_s, abs=0.03)


@pytest.mark.parametrize("rate", [16000, 24000])
def test_a_flush_mid_stream_never_changes_the_words_wherever_it_lands(rate: int) -> None:
    """A client's flush lands wherever the audio happened to have got to (how its frames arrived): a word
    still being spoken then stays open instead of being cut in two ("h" + "ow"), and one already over is
    finished at once, with the same start and end as without the flush."""
    pcm, _ = tones.synthesize("hello world. how are you today?", rate)
    plain = tone_decoder.transcribe(pcm, rate)
    rec = ToneRecognizer(rate)
    reference = rec.feed(pcm) + rec.flush()
    for cut in range(0, len(pcm), rate // 100):  # every 10 ms
        rec = ToneRecognizer(rate)
        words = rec.feed(pcm[:cut]) + rec.flush(final=False) + rec.feed(pcm[cut:]) + rec.flush()
        assert " ".join(w.text for w in words) == plain, f"flush at {cut / rate:.2f} s"
        assert [(w.start_s, w.stop_s) for w in words] == [(w.start_s, w.stop_s) for w in reference]


def test_a_flush_in_the_silence_after_a_word_finishes_it_at_once() -> None:
    pcm, timings = tones.synthesize("one two", 24000)
    rec = ToneRecognizer(24000)
    end = round((timings[0].stop_s + 0.045 + tone_decoder.WINDOW_S) * 24000)  # 45 ms of silence analyzed
    assert rec.feed(pcm[:end]) == []  # not yet the 60 ms that end a word by themselves
    assert [w.text for w in rec.flush(final=False)] == ["one"]
    assert [w.text for w in rec.feed(pcm[end:]) + rec.flush()] == ["two"]


def test_vad_state() -> None:
    rec = ToneRecognizer(24000)
    pcm, timings = tones.synthesize("done.", 24000)
    end_of_tone = round(timings[0].stop_s * 24000)
    rec.feed(pcm[: end_of_tone - 240])
    assert rec.speech_active
    assert rec.trailing_silence_s < 0.05
    rec.feed(pcm[end_of_tone - 240 :])
    rec.feed(np.zeros(24000, np.int16))
    assert not rec.speech_active
    assert rec.sentence_ended
    assert rec.trailing_silence_s == pytest.approx(rec.time_s - timings[0].stop_s, abs=0.03)


def test_silence_and_empty_text() -> None:
    pcm, timings = tones.synthesize("", 24000)
    assert timings == []
    assert tone_decoder.transcribe(pcm, 24000) == ""
    assert tone_decoder.transcribe(np.zeros(48000, np.int16), 24000) == ""
