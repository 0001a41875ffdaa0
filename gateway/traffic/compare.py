"""Compare the two legs of a `PairTrace`: one store row per pair, one unit row per TTS context.

`compare_pair` is a pure function of the traces (no I/O, no clock): call it off the event loop (the
recorder runs it in a worker thread). Columns follow traffic.md §6; `_p`/`_s` are the primary and the
shadow leg; deltas and ratios are hypothesis against reference (Gradium against legacy in a candidate
pair, shadow copy against primary in a noise pair), so their sign means the same in both directions.

Text (`final_text`, input text) lands in the row only with `store_text=True` and never for a
privacy-flagged pair. The opt-in ASR round trip (`asr`) is a callable `(samples16k, 16000) -> text`
that the caller wires to an STT of its choice (budgeted by the shadow machinery).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.audio.base import AudioError
from gateway.traffic import audio_metrics as am
from gateway.traffic import text_metrics as tm
from gateway.traffic.trace import LegTrace, PairTrace

RoundTripAsr = Callable[[np.ndarray, int], str]
LAG_EXCLUDE_MS = 50.0  # pairs whose shadow queue lag p95 exceeds this leave the latency statistics
INTERRUPTING_CONTROLS = frozenset({"clear", "cancel", "interrupt"})

# The promoted columns of `shadow_pairs` (everything else goes into the `metrics` JSON).
PAIR_COLUMNS = (
    "pair_id", "started_at", "ended_at", "tenant", "provider", "route", "kind", "transport",
    "primary_target", "shadow_target", "pair_kind", "config_version", "sticky_reason", "outcome", "flags",
    "primary_request_id", "shadow_request_id", "lag_p95_ms", "shadow_connect_ms", "cost_tts_chars",
    "cost_stt_seconds", "wer", "err_sub", "err_del", "err_ins", "ref_words", "first_final_ms_p",
    "first_final_ms_s", "emission_ms_p", "emission_ms_s", "ttfa_ms_p", "ttfa_ms_s", "duration_ratio",
    "lufs_delta", "format_match", "rt_wer_p", "rt_wer_s", "final_text_p", "final_text_s", "input_text",
)
UNIT_COLUMNS = ("pair_id", "ctx", "interrupted", "ttfa_ms_p", "ttfa_ms_s", "duration_ratio", "lufs_delta",
                "format_match")


@dataclass(slots=True)
class Comparison:
    row: dict[str, Any]
    units: list[dict[str, Any]] = field(default_factory=list)


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


def _leg_key(pair: PairTrace, leg: LegTrace) -> str:
    return "p" if leg is pair.primary else "s"


def base_row(pair: PairTrace) -> dict[str, Any]:
    """The identity and bookkeeping columns; what is written even when metrics are skipped."""
    flags = pair.all_flags()
    if pair.lag_p95_ms is not None and pair.lag_p95_ms > LAG_EXCLUDE_MS:
        flags.add("lag_excluded")
    return {
        "pair_id": pair.pair_id, "started_at": pair.started_at, "ended_at": pair.ended_at,
        "tenant": pair.tenant, "provider": pair.provider, "route": pair.route, "kind": pair.kind,
        "transport": pair.transport, "primary_target": pair.primary_target or pair.primary.side,
        "shadow_target": pair.shadow.side,
        "pair_kind": pair.pair_kind, "config_version": pair.config_version, "sticky_reason": pair.sticky_reason,
        "outcome": pair.outcome, "flags": sorted(flags),
        "primary_request_id": pair.primary_request_id or pair.primary.upstream_request_id,
        "shadow_request_id": pair.shadow.upstream_request_id,
        "lag_p95_ms": pair.lag_p95_ms, "shadow_connect_ms": pair.shadow_connect_ms,
        "cost_tts_chars": pair.cost_tts_chars, "cost_stt_seconds": pair.cost_stt_seconds,
        "metrics": {},
    }


def _leg_info(leg: LegTrace) -> dict[str, Any]:
    return {"side": leg.side, "role": leg.role, "leg_id": leg.leg_id,
            "upstream_request_id": leg.upstream_request_id, "status": leg.status,
            "close_code": leg.close_code, "error": leg.error_message, "outputs": leg.output_count,
            "output_bytes": leg.output_bytes}


def compare_pair(
    pair: PairTrace, *, store_text: bool = False, asr: RoundTripAsr | None = None, max_audio_s: float = am.MAX_AUDIO_S
) -> Comparison:
    row = base_row(pair)
    ref, hyp = pair.reference, pair.hypothesis
    metrics: dict[str, Any] = {"reference": _leg_key(pair, ref), "legs": {
        "p": _leg_info(pair.primary), "s": _leg_info(pair.shadow)}}
    units: list[dict[str, Any]] = []
    if pair.kind == "stt":
        _compare_stt(pair, ref, hyp, row, metrics)
    else:
        units = _compare_tts(pair, row, metrics, asr, max_audio_s)
    keep_text = store_text and not pair.privacy
    if keep_text:
        if pair.kind == "stt":
            row["final_text_p"], row["final_text_s"] = pair.primary.final_text(), pair.shadow.final_text()
        row["input_text"] = pair.input_text
    row["metrics"] = _round(metrics)
    row["flags"] = sorted(set(row["flags"]) | set(metrics.pop("_flags", ())))
    row["metrics"].pop("_flags", None)
    return Comparison(_round(row), units)


def _compare_stt(pair: PairTrace, ref: LegTrace, hyp: LegTrace, row: dict[str, Any], metrics: dict[str, Any]) -> None:
    p, s = tm.stt_leg_metrics(pair.primary), tm.stt_leg_metrics(pair.shadow)
    metrics["p"], metrics["s"] = p, s
    pm = tm.stt_pair_metrics(ref, hyp, pair.language)
    for col in ("wer", "err_sub", "err_del", "err_ins", "ref_words"):
        row[col] = pm.pop(col)
    metrics.update(pm)
    row["first_final_ms_p"], row["first_final_ms_s"] = p["first_final_ms"], s["first_final_ms"]
    row["emission_ms_p"], row["emission_ms_s"] = p["emission_ms"], s["emission_ms"]


def _contexts(leg: LegTrace) -> list[str | None]:
    seen = dict.fromkeys(leg.first_text_ms)
    seen.update(dict.fromkeys(leg.audio_buf))
    return list(seen)


def _ttfa_ms(leg: LegTrace, ctx: str | None) -> float | None:
    first = next((o.t_ms for o in leg.outputs if o.kind == "audio" and o.audio_bytes and o.ctx == ctx), None)
    if first is None:
        return None
    start = leg.first_text_ms.get(ctx)
    if start is None:
        start = leg.sent_start_ms
    return first - start


def _flush_ms(leg: LegTrace) -> float | None:
    audio_t = [(o.t_ms, o.ctx) for o in leg.outputs if o.kind == "audio" and o.audio_bytes]
    deltas = []
    for c in leg.controls:
        if c.kind == "flush":
            nxt = next((t for t, ctx in audio_t if t >= c.t_ms and (c.ctx is None or ctx == c.ctx)), None)
            if nxt is not None:
                deltas.append(nxt - c.t_ms)
    return float(statistics.median(deltas)) if deltas else None


def _interrupted(leg: LegTrace) -> set[str | None]:
    return {c.ctx for c in leg.controls if c.kind in INTERRUPTING_CONTROLS}


def _decode_ctx(leg: LegTrace, ctx: str | None, max_audio_s: float, flags: set[str]) -> am.Decoded | None:
    try:
        d = am.decode(leg.audio_bytes(ctx), leg.audio_format, max_audio_s)
    except (AudioError, ValueError):
        flags.add("audio_undecodable")
        return None
    if d.truncated:
        flags.add("audio_truncated")
    return d


def _ratio(h: float | None, r: float | None) -> float | None:
    return h / r if h is not None and r else None


def _delta(h: float | None, r: float | None) -> float | None:
    return h - r if h is not None and r is not None else None


def _compare_tts(
    pair: PairTrace, row: dict[str, Any], metrics: dict[str, Any], asr: RoundTripAsr | None, max_audio_s: float
) -> list[dict[str, Any]]:
    flags: set[str] = set()
    legs = {"p": pair.primary, "s": pair.shadow}
    ref_key = metrics["reference"]
    hyp_key = "s" if ref_key == "p" else "p"
    contexts = list(dict.fromkeys(_contexts(pair.primary) + _contexts(pair.shadow))) or [None]
    interrupted = _interrupted(pair.primary) | _interrupted(pair.shadow)
    if None in interrupted:  # a whole-socket clear interrupts every context
        interrupted = set(contexts)
    decoded: dict[str, dict[str | None, am.Decoded | None]] = {
        k: {c: _decode_ctx(leg, c, max_audio_s, flags) for c in contexts} for k, leg in legs.items()}
    whole: dict[str, np.ndarray] = {}
    leg_out: dict[str, dict[str, Any]] = {}
    for k, leg in legs.items():
        ds = [d for c, d in decoded[k].items() if d is not None and c not in interrupted]
        rates = {d.rate for d in ds}
        rate = rates.pop() if len(rates) == 1 else am.ANALYSIS_RATE
        parts = [d.samples if d.rate == rate else am.to_analysis_rate(d.samples, d.rate) for d in ds]
        whole[k] = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        fmts = {am.format_label(d.fmt) for d in decoded[k].values() if d is not None and d.fmt is not None}
        leg_out[k] = {"ttfa_ms": _ttfa_ms(leg, contexts[0]) if contexts else None, "flush_ms": _flush_ms(leg),
                      "format": sorted(fmts)[0] if len(fmts) == 1 else sorted(fmts) or None,
                      **am.signal_metrics(whole[k], rate), "_rate": rate}
    asked = am.format_label(pair.primary.audio_format)
    fp, fs = leg_out["p"]["format"], leg_out["s"]["format"]
    # no audio kept on a leg: nothing to match (None), not a mismatch
    format_match = None if fp is None or fs is None else isinstance(fp, str) and fp == fs and asked in (None, fp)
    ref_m, hyp_m = leg_out[ref_key], leg_out[hyp_key]
    row["ttfa_ms_p"], row["ttfa_ms_s"] = leg_out["p"]["ttfa_ms"], leg_out["s"]["ttfa_ms"]
    row["duration_ratio"] = _ratio(hyp_m["duration_s"], ref_m["duration_s"])
    row["lufs_delta"] = _delta(hyp_m["lufs"], ref_m["lufs"])
    row["format_match"] = format_match
    if asr is not None and pair.input_text and not pair.privacy:
        for k in ("p", "s"):
            heard = asr(am.to_analysis_rate(whole[k], leg_out[k]["_rate"]), am.ANALYSIS_RATE)
            row[f"rt_wer_{k}"] = tm.error_counts(pair.input_text, heard, pair.language).wer
        metrics["rt_wer_delta"] = _delta(row[f"rt_wer_{hyp_key}"], row[f"rt_wer_{ref_key}"])
    for k in ("p", "s"):
        leg_out[k].pop("_rate")
    metrics["p"], metrics["s"] = leg_out["p"], leg_out["s"]
    metrics["asked_format"] = asked
    metrics["contexts"] = len(contexts)
    metrics["interrupted"] = len(interrupted & set(contexts))
    metrics["_flags"] = flags
    if len(contexts) <= 1:
        return []
    return [_unit(pair, c, decoded, ref_key, hyp_key, c in interrupted) for c in contexts]


def _unit(pair: PairTrace, ctx: str | None, decoded: dict[str, dict[str | None, am.Decoded | None]], ref_key: str,
          hyp_key: str, interrupted: bool) -> dict[str, Any]:
    per = {}
    for k in ("p", "s"):
        d = decoded[k].get(ctx)
        per[k] = am.signal_metrics(d.samples, d.rate) if d is not None else {"duration_s": None, "lufs": None}
        per[k]["format"] = am.format_label(d.fmt) if d is not None else None
    legs = {"p": pair.primary, "s": pair.shadow}
    return _round({
        "pair_id": pair.pair_id, "ctx": ctx or "", "interrupted": interrupted, "started_at": pair.started_at,
        "ttfa_ms_p": _ttfa_ms(legs["p"], ctx), "ttfa_ms_s": _ttfa_ms(legs["s"], ctx),
        "duration_ratio": None if interrupted else _ratio(per[hyp_key]["duration_s"], per[ref_key]["duration_s"]),
        "lufs_delta": _delta(per[hyp_key]["lufs"], per[ref_key]["lufs"]),
        "format_match": per["p"]["format"] is not None and per["p"]["format"] == per["s"]["format"],
        "metrics": {"p": per["p"], "s": per["s"]},
    })
