"""Targets, the added-cost comparison, the LAME capacity reference and the table of `bench/load.py`."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

# Issue 12's targets, as added cost against direct in the same run.
TTS_FIRST_P99_MS = {200: 15.0, 500: 50.0}
TTS_GAP_P99_MS = 10.0
MP3_FIRST_P50_MS_AT_1 = 5.0  # with the provider at real time (--tts-speed 1)
STT_WORD_P99_MS = 50.0
STT_CPU_MS_PER_STREAM_S = 0.5
STT_RSS_MB_PER_1000 = 400.0
LIVE_SESSION_S = 30.0  # the session length the CPU split is projected to
FRAMES_PER_S = 12.5  # 80 ms frames


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def compare(row: dict[str, Any]) -> dict[str, Any]:
    d, g = row["direct"], row["gateway"]
    out = {
        "added_first_p50": _sub(g["first_p50"], d["first_p50"]),
        "added_first_p99": _sub(g["first_p99"], d["first_p99"]),
        "added_gap_p99": _sub(g["gap_p99"], d["gap_p99"]),
    }
    out["misses"] = misses(row["path"], row["streams"], out, g, d)
    return out


def misses(path: str, n: int, added: dict[str, Any], g: dict[str, Any], d: dict[str, Any]) -> list[str]:
    """Which targets this row misses (empty: it meets them all)."""
    why = []
    if g["sessions_failed"] or not g["sessions_ok"]:
        why.append(f"{g['sessions_failed']} failed")
    first99, first50, gap99 = added["added_first_p99"], added["added_first_p50"], added["added_gap_p99"]
    if path == "tts_ws":
        limit = TTS_FIRST_P99_MS[200] if n <= 200 else TTS_FIRST_P99_MS[500]
        if first99 is None or first99 > limit:
            why.append(f"first p99 > +{limit:.0f} ms")
        if gap99 is None or gap99 > TTS_GAP_P99_MS:
            why.append(f"gap p99 > +{TTS_GAP_P99_MS:.0f} ms")
    if path in ("tts_ws", "rest_mp3") and g["underrun_sessions"] > d["underrun_sessions"]:
        why.append(f"{g['underrun_sessions']} underruns")
    if path == "rest_mp3" and n == 1 and (first50 is None or first50 > MP3_FIRST_P50_MS_AT_1):
        why.append(f"first p50 > +{MP3_FIRST_P50_MS_AT_1:.0f} ms")
    if path in ("dg_live", "el_stt"):
        if first99 is None or first99 > STT_WORD_P99_MS:
            why.append(f"word p99 > +{STT_WORD_P99_MS:.0f} ms")
        if g.get("gw_cpu_ms_per_stream_s", 0.0) > STT_CPU_MS_PER_STREAM_S:
            why.append(f"cpu > {STT_CPU_MS_PER_STREAM_S} ms/stream-s")
        if g.get("gw_rss_mb", 0.0) > STT_RSS_MB_PER_1000 * max(1.0, n / 1000):
            why.append("rss")
    return why


def lame_capacity(provider_speed: float) -> dict[str, float]:
    """LAME's real-time factor for mp3_44100_128 on one core here, and the stream count the REST mp3
    target refers to: 0.8 x cores x LAME factor / provider speed (a 5x provider feeds 5x the audio)."""
    import av

    seconds = 20.0
    t = np.arange(int(44100 * seconds)) / 44100
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    codec = av.CodecContext.create("libmp3lame", "w")
    codec.sample_rate, codec.layout, codec.format, codec.bit_rate = 44100, "mono", "s16p", 128000
    codec.open()
    t0 = time.process_time()
    for i in range(0, len(pcm) - 1152, 1152):
        frame = av.AudioFrame.from_ndarray(pcm[i : i + 1152].reshape(1, -1), format="s16p", layout="mono")
        frame.sample_rate = 44100
        codec.encode(frame)
    cpu = max(1e-6, time.process_time() - t0)
    factor = seconds / cpu
    cores = len(os.sched_getaffinity(0))
    return {"lame_x_realtime_per_core": factor, "cores": cores,
            "target_streams": 0.8 * cores * factor / max(provider_speed, 1.0)}


CALIBRATION = "measured alone, a few at a time"


def projected_cpu(session_ms: float, frame_us: float, session_s: float) -> float:
    """Gateway CPU ms per stream-second for sessions of `session_s`, from the per-session and per-frame split."""
    return session_ms / session_s + FRAMES_PER_S * frame_us / 1e3


def _f(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:+.{digits}f}" if digits >= 0 else f"{x:.0f}"


def _n(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


HEADER = ("path", "streams", "added first p50/p99 ms", "added gap p99 ms", "underruns gw/direct",
          "failed gw/direct", "gw CPU ms/stream-s", "gw CPU ms/session + us/frame", "gw RSS MB (KB/stream)",
          "loadgen CPU %", "emu CPU %", "machine busy % (others' CPU %)", "meets targets")


def _split(g: dict[str, Any]) -> str:
    if "gw_cpu_us_per_frame" not in g:
        return "-"
    return f"{g['gw_cpu_ms_per_session']:.2f} + {g['gw_cpu_us_per_frame']:.0f}"


def cells(row: dict[str, Any]) -> tuple[str, ...]:
    g, d = row["gateway"], row["direct"]
    emu_pct = 100 * g["cpu_s"].get("emulator", 0.0) / g["wall_s"]
    return (
        row["path"],
        str(row["streams"]),
        f"{_f(row['added_first_p50'])} / {_f(row['added_first_p99'])}",
        _f(row["added_gap_p99"]),
        f"{g['underrun_sessions']}/{d['underrun_sessions']}",
        f"{g['sessions_failed']}/{d['sessions_failed']}",
        _n(g.get("gw_cpu_ms_per_stream_s"), 2),
        _split(g),
        f"{_n(g.get('gw_rss_mb'), 0)} ({_n(g.get('gw_rss_kb_per_stream'), 0)})",
        f"{_n(g['loadgen_cpu_pct'], 0)}/{_n(d['loadgen_cpu_pct'], 0)}",
        _n(emu_pct, 0),
        f"{_n(g['machine_busy_pct'], 0)}/{_n(d['machine_busy_pct'], 0)} "
        f"({_n(g.get('others_cpu_pct'), 0)}/{_n(d.get('others_cpu_pct'), 0)})",
        "yes" if not row["misses"] else "no: " + ", ".join(row["misses"]),
    )


def render_row(row: dict[str, Any]) -> str:
    return "  " + " | ".join(f"{h}: {c}" for h, c in zip(HEADER, cells(row), strict=True))


def render(report: dict[str, Any]) -> str:
    rows = [HEADER] + [cells(r) for r in report["rows"]]
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "---|" * len(HEADER))
    lame = report["lame_capacity"]
    m = report["machine"]
    cfg = report["config"]
    lines += [
        "",
        "loadgen CPU % and machine busy % are gateway side / direct side; machine busy % is the share of all "
        f"{m['cpus']} cores used by every process on the machine; others' CPU % is what processes other than the "
        "gateway, the emulator and the load generator used (100 = one core).",
        f"load average start {m['loadavg_start'][0]:.2f}, end {m['loadavg_end'][0]:.2f}; gateway workers: "
        f"{cfg['workers'] or 'default'}; provider: first audio {cfg['first_audio_ms']:.0f} ms, {cfg['tts_speed']}x RT",
        f"LAME mp3_44100_128: {lame['lame_x_realtime_per_core']:.0f}x real time per core; REST mp3 target "
        f"(0.8 x cores x LAME / provider speed): {lame['target_streams']:.0f} streams",
    ]
    mp3 = [(r["streams"], r["gateway"]["gw_cpu_ms_per_audio_s"]) for r in report["rows"]
           if r["path"] == "rest_mp3" and "gw_cpu_ms_per_audio_s" in r["gateway"]]
    if mp3:
        # Robust on a shared machine (CPU, not wall time): how close the mp3 path is to LAME's own cost.
        cells_ = ", ".join(f"{n}: {ms:.1f}" for n, ms in mp3)
        lines.append(f"REST mp3 gateway CPU ms per second of mp3 delivered, by streams: {cells_} "
                     f"(LAME alone: {1e3 / lame['lame_x_realtime_per_core']:.1f})")
    stt = [r for r in report["rows"] if "stt_session_s" in r]
    if stt:
        lines.append(f"STT sessions: {stt[0]['stt_session_s']:.1f} s of audio each (--stt-seconds "
                     f"{cfg['stt_seconds']:g}, the clip looped)")
    for r in stt:
        g = r["gateway"]
        if "gw_cpu_us_per_frame" in g:
            per_s = projected_cpu(g["gw_cpu_ms_per_session"], g["gw_cpu_us_per_frame"], LIVE_SESSION_S)
            lines.append(f"  {r['path']} at {r['streams']}: gw CPU per session {g['gw_cpu_ms_per_session']:.2f} ms "
                         f"(no audio, {CALIBRATION}) + {g['gw_cpu_us_per_frame']:.0f} us per frame -> "
                         f"{per_s:.2f} ms/stream-s for {LIVE_SESSION_S:.0f} s sessions")
    lines += ["", "headline (highest stream count meeting the targets):"]
    for path in dict.fromkeys(r["path"] for r in report["rows"]):
        ok = [r["streams"] for r in report["rows"] if r["path"] == path and not r["misses"]]
        lines.append(f"  {path}: {max(ok) if ok else 'none (no step met the targets)'}")
    return "\n".join(lines)
