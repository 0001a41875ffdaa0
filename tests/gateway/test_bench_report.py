"""`bench/run.py`'s table (`bench/run_report.py`): one row per metric with direct, gateway, ratio and added
milliseconds, a throughput row, FAILED where the gateway side measured nothing, and the failures list."""

from __future__ import annotations

from typing import Any

from tests.bench_scripts import load


def result(gateway_ok: bool) -> dict[str, Any]:
    direct = {"measured": True, "sessions_ok": 4, "sessions_failed": 0,
              "metrics": {"ttfa_ms": {"p50": 2.0, "p99": 4.0}}, "throughput": {"audio_x_realtime": 900.0}}
    gateway: dict[str, Any] = {"measured": True, "sessions_ok": 4 if gateway_ok else 0,
                               "sessions_failed": 0 if gateway_ok else 4}
    compare: dict[str, Any] = {}
    if gateway_ok:
        gateway |= {"metrics": {"ttfa_ms": {"p50": 3.0, "p99": 5.0}}, "throughput": {"audio_x_realtime": 450.0}}
        compare = {"ttfa_ms": {"ratio_p50": 1.5, "ratio_p99": 1.25, "added_ms_p50": 1.0, "added_ms_p99": 1.0},
                   "throughput_ratio": 0.5}
    else:
        gateway["errors"] = ["PathError: socket closed"]
    return {"path": "tts_ws", "mode": "stream-input", "concurrency": 1, "table_metrics": ["ttfa_ms"],
            "direct": direct, "gateway": gateway, "compare": compare}


def test_the_table_has_a_row_per_metric_and_a_throughput_row() -> None:
    report = load("run_report")
    lines = report.render_table([result(True)]).splitlines()
    assert lines[0].split()[:4] == ["path", "mode", "conc", "metric"] and set(lines[1]) == {"-"}
    ttfa = lines[2].split()
    assert ttfa[:4] == ["tts_ws", "stream-input", "1", "ttfa_ms"]
    assert ttfa[4:] == ["2.00", "4.00", "3.00", "5.00", "1.50x", "1.25x", "1.00", "1.00"]
    assert "audio xRT" in lines[3] and "0.50x" in lines[3]
    assert report.failures([result(True)]) == []


def test_a_side_that_measured_nothing_shows_failed_and_is_listed() -> None:
    report = load("run_report")
    table = report.render_table([result(False)])
    assert table.splitlines()[2].split()[6:8] == ["FAILED", "FAILED"]
    [failed] = report.failures([result(False)])
    assert failed["side"] == "gateway" and failed["sessions_failed"] == 4 and failed["errors"]
