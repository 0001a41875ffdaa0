"""The serving gateway's comparator: pairs compared in a niced child process, the same rows as in-thread."""

from __future__ import annotations

import os
import pickle
import signal
from concurrent.futures import BrokenExecutor

import pytest

from gateway.traffic.comparator import NICE, ProcessComparator
from gateway.traffic.compare import compare_pair
from gateway.traffic.recorder import PairRecorder
from tests.traffic.test_compare_tts import _pair, s16, sine


def _tts_pair():  # type: ignore[no-untyped-def]
    pair = _pair("gradium", "legacy")
    pair.primary.sent_text(11, t=100.0)
    pair.shadow.sent_text(11, t=105.0)
    pair.primary.audio(s16(sine(1.1, -23.0)), t=180.0)
    pair.shadow.audio(s16(sine(1.0, -20.0)), t=245.0)
    return pair


def _child_pids() -> list[int]:
    import multiprocessing

    return [p.pid for p in multiprocessing.active_children() if p.pid is not None]


def test_the_child_computes_the_same_row_at_a_lower_priority() -> None:
    comparator = ProcessComparator()
    try:
        comparator.warm()
        pair = _tts_pair()
        got = comparator.compare(pair)
        want = compare_pair(pair)
        assert got.row == want.row and got.units == want.units
        assert got.row["duration_ratio"] == pytest.approx(1.1, abs=1e-3)
        children = [pid for pid in _child_pids() if os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(
            os.PRIO_PROCESS, 0) + NICE]
        assert children, "no niced comparator child"
    finally:
        comparator.close()


def test_a_dead_child_loses_its_pair_and_is_replaced() -> None:
    comparator = ProcessComparator()
    try:
        comparator.warm()
        for pid in _child_pids():
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenExecutor):
            comparator.compare(_tts_pair())
        assert comparator.compare(_tts_pair()).row["duration_ratio"] == pytest.approx(1.1, abs=1e-3)
    finally:
        comparator.close()


def test_the_recorder_writes_a_compare_error_row_when_the_child_dies() -> None:
    rows: list[dict] = []  # type: ignore[type-arg]

    class Sink:
        sink = "memory"

        def put(self, row, units=None):  # type: ignore[no-untyped-def]
            rows.append(row)
            return True

    comparator = ProcessComparator()
    recorder = PairRecorder([Sink()], compare=comparator.compare).start()
    try:
        comparator.warm()
        for pid in _child_pids():
            os.kill(pid, signal.SIGKILL)
        recorder.record(_tts_pair())
        recorder.record(_tts_pair())
        assert recorder.flush(30)
    finally:
        recorder.close()
        comparator.close()
    assert len(rows) == 2
    assert "compare_error" in rows[0]["flags"]  # lost with the child, its outcome still stored
    assert rows[1]["duration_ratio"] == pytest.approx(1.1, abs=1e-3)  # the next one has a new child


def test_a_child_that_cannot_start_leaves_comparisons_in_the_thread() -> None:
    comparator = ProcessComparator()
    comparator._pool.shutdown()  # as if the child could not be started: warm() cannot reach it
    comparator.warm()
    assert comparator.in_thread
    pair = _tts_pair()
    assert comparator.compare(pair).row == compare_pair(pair).row
    comparator.close()


def test_a_comparison_past_its_deadline_is_abandoned_and_the_child_replaced() -> None:
    comparator = ProcessComparator(timeout_s=0)  # no comparison can be done at once
    try:
        comparator.warm()
        with pytest.raises(TimeoutError):
            comparator.compare(_tts_pair())
        comparator.timeout_s = 30
        assert comparator.compare(_tts_pair()).row["duration_ratio"] == pytest.approx(1.1, abs=1e-3)
    finally:
        comparator.close()


def _tts_source():  # type: ignore[no-untyped-def]
    """A pair as the serving process hands it over: both legs' ElevenLabs frames as they came, not read in."""
    import base64

    from gateway.traffic.bridge import LegSource, PairSource
    from gateway.traffic.trace import PairTrace
    from tests.traffic.test_compare_tts import ASKED

    pair = PairTrace.open(tenant="acme", provider="elevenlabs", route="tts_stream_input", kind="tts", transport="ws",
                          primary_side="gradium", shadow_side="legacy", audio_format=ASKED)
    legs = []
    for trace, (t0, audio) in zip((pair.primary, pair.shadow), ((100.0, sine(1.1, -23.0)), (105.0, sine(1.0, -20.0))),
                                  strict=True):
        pcm = s16(audio)
        frames: list[tuple[bool, float, str | bytes]] = [(True, t0 / 1000, '{"text":"Hello world"}')]
        frames += [(False, (t0 + 80 + i) / 1000, b'{"audio":"%s"}' % base64.b64encode(pcm[i : i + 9600]))
                   for i in range(0, len(pcm), 9600)]
        legs.append(LegSource(trace, frames, end=(None, 1000, None, t0 + 500)))
    return PairSource(pair, *legs)


def test_the_child_reads_the_handed_frames_in_as_this_process_would() -> None:
    comparator = ProcessComparator()
    try:
        comparator.warm()
        source = _tts_source()
        got = comparator.compare(source)
        assert source.pair.primary.output_count == 0  # read in over there, not here
        want = compare_pair(pickle.loads(pickle.dumps(source)).build())  # the same pair, read in here
        assert got.row == want.row and got.units == want.units
        assert got.row["duration_ratio"] == pytest.approx(1.1, abs=1e-3) and got.row["ttfa_ms_p"] == 80
    finally:
        comparator.close()


def _page_faults_of_a_comparison(pair) -> int:  # type: ignore[no-untyped-def]
    """In the child: the minor page faults of comparing `pair` once more (after one to warm up)."""
    import resource

    from gateway.traffic.comparator import _compare

    _compare(pair, False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    _compare(pair, False)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_the_child_reuses_its_heap_instead_of_mapping_fresh_pages_per_comparison() -> None:
    """A 5 s pair's arrays are ~11 MB: served by mmap, each comparison took ~2,800 page faults (each page
    zeroed by the kernel, through the cache the serving processes share); from the kept heap, next to none."""
    pair = _pair("gradium", "legacy")
    pair.primary.sent_text(11, t=100.0)
    pair.shadow.sent_text(11, t=105.0)
    pair.primary.audio(s16(sine(5.0, -23.0)), t=180.0)
    pair.shadow.audio(s16(sine(5.0, -20.0)), t=245.0)
    comparator = ProcessComparator()
    try:
        comparator.warm()
        faults = comparator._pool.submit(_page_faults_of_a_comparison, pair).result(timeout=60)
    finally:
        comparator.close()
    assert faults < 300, f"{faults} page faults for one comparison"
