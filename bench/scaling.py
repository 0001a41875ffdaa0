"""Worker scaling: the saturation point of `serve --workers 2` against `--workers 1`, each worker given
the same CPU budget.

    python bench/scaling.py [--paths tts_ws,dg_live] [--core-share 0.3] [--duration 5] [--json PATH]

Issue 12 asks for `--workers 2` to carry at least 1.7x the streams of one worker before it saturates. On a
2-core machine that cannot be shown with whole cores: at twice one worker's saturation load, the load
generator and the paced emulator (`bench/load.py`'s) need a core of their own. So the gateway runs in a CPU
cgroup whose quota is `--core-share` of a core per worker (0.3 and 0.6 core by default, a 10 ms period),
and the rest of the machine serves the load generator and the emulator. What the ratio shows is whether
workers add capacity in proportion (nothing shared between them, such as one accept queue, a lock or the
parent, caps it), not the capacity of whole cores.

The saturation point is the highest stream count at which the gateway still keeps up: no failed session, no
more playback underruns than direct, and added first output (first audio; first final word for STT) within
SATURATED_P50_MS at p50 and SATURATED_P99_MS at p99 of direct at the same count, in the same run. Counts
climb by GROWTH until a step fails, then two bisection steps narrow it. Needs root (or a delegated cgroup).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
import load_report
import procs

RESULTS = Path(__file__).resolve().parent / "results"
SATURATED_P50_MS = 20.0  # well above the one-stream overhead (1-3 ms), well below a queue building up
SATURATED_P99_MS = 100.0
GROWTH = 1.3
START = {"tts_ws": 10, "rest_mp3": 2, "dg_live": 40, "el_stt": 40}
PERIOD_US = 10_000  # short, so a throttled worker waits at most a few ms, not most of 100 ms
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")


@contextlib.contextmanager
def cpu_cgroup(name: str, cores: float) -> Iterator[Path]:
    """A CPU cgroup capped at `cores`; yields its `cgroup.procs` file. cgroup v2 or v1's cpu controller."""
    v2 = (CGROUP_V2 / "cgroup.controllers").exists()
    root = CGROUP_V2 if v2 else CGROUP_V1
    group = root / name
    group.mkdir(exist_ok=True)
    try:
        quota = max(1000, round(cores * PERIOD_US))
        if v2:
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        yield group / "cgroup.procs"
    finally:
        with contextlib.suppress(OSError):  # the gateway has exited by now; an empty group can go
            for pid in (group / "cgroup.procs").read_text().split():
                (root / "cgroup.procs").write_text(pid)
            group.rmdir()


def confine(proc: procs.Proc, cgroup_procs: Path) -> int:
    """Moves the gateway and its workers (threads included) into the cgroup; restarted workers inherit it."""
    pids = procs.tree_pids(proc.process.pid)
    for pid in pids:
        cgroup_procs.write_text(str(pid))
    return len(pids)


def keeps_up(row: dict[str, Any]) -> bool:
    g, d = row["gateway"], row["direct"]
    p50, p99 = row["added_first_p50"], row["added_first_p99"]
    return (
        not g["sessions_failed"] and g["sessions_ok"] > 0
        and g["underrun_sessions"] <= d["underrun_sessions"]
        and p50 is not None and p50 <= SATURATED_P50_MS
        and p99 is not None and p99 <= SATURATED_P99_MS
    )


class Ladder:
    """Stream counts to try: up by GROWTH from `start` (down when `start` already fails), then bisection."""

    def __init__(self, start: int) -> None:
        self.passed, self.failed, self.next = 0, 0, start

    def record(self, n: int, ok: bool) -> int | None:
        """Records step `n`; returns the next count, or None when the saturation point is known."""
        if ok:
            self.passed = max(self.passed, n)
        else:
            self.failed = n if not self.failed else min(self.failed, n)
        if not self.failed:
            return math.ceil(n * GROWTH)
        if not self.passed:
            return None if n <= 1 else max(1, math.floor(n / GROWTH))
        if self.failed - self.passed <= max(1, self.passed // 10):  # within 10 %: good enough
            return None
        return (self.passed + self.failed) // 2


async def saturation(path: str, workers: int, start: int, args: argparse.Namespace, http: aiohttp.ClientSession,
                     emulator: procs.Proc, direct_rows: dict[int, dict[str, Any]]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    capped = cpu_cgroup(f"gradium-bench-{os.getpid()}", args.core_share * workers) if args.core_share else None
    with capped or contextlib.nullcontext() as cgroup_procs:
        gateway = await procs.start_gateway(emulator.url, RESULTS, "--workers", str(workers))
        try:
            confined = confine(gateway, cgroup_procs) if cgroup_procs else 0
            direct, gw = load.sessions(emulator.url, gateway.url, http)[path]
            for _ in range(3):  # warm up pools and caches, as bench/load.py does
                await load.guarded(gw)
            ladder, n = Ladder(start), start
            while n is not None and n <= args.max_streams:
                if n not in direct_rows:  # direct does not depend on the gateway: measured once per count
                    direct_rows[n] = load.summarize(await load.run_step(direct, n, args.duration, None, [emulator]), n)
                    await asyncio.sleep(1.0)
                side = await load.run_step(gw, n, args.duration, gateway, [emulator, gateway])
                row = {"path": path, "streams": n, "direct": direct_rows[n], "gateway": load.summarize(side, n)}
                row |= load_report.compare(row)
                row["keeps_up"] = keeps_up(row)
                row["gw_cores"] = side.cpu_s["gateway"] / side.wall_s
                steps.append(row)
                print(f"  {path} workers={workers} streams={n}: added first p50 {row['added_first_p50']:+.1f} "
                      f"p99 {row['added_first_p99']:+.1f} ms, failed {row['gateway']['sessions_failed']}, "
                      f"gateway {row['gw_cores']:.2f} cores (cap {args.core_share * workers or '-'}) -> "
                      f"{'keeps up' if row['keeps_up'] else 'saturated'}", file=sys.stderr, flush=True)
                await asyncio.sleep(1.0)
                n = ladder.record(n, row["keeps_up"])
        finally:
            await procs.stop(gateway)
    return {"workers": workers, "cores": args.core_share * workers, "confined_pids": confined,
            "saturation_streams": ladder.passed, "saturated": bool(ladder.failed), "steps": steps}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    emulator = await procs.start_emulator(
        RESULTS, "--first-audio-delay-ms", "100", "--tts-speed", "5", "--stt-replay")
    results: dict[str, Any] = {}
    load0 = os.getloadavg()
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
            for path in args.paths:
                direct_rows: dict[int, dict[str, Any]] = {}
                start = min(START[path], args.max_streams)
                one = await saturation(path, 1, start, args, http, emulator, direct_rows)
                # Two workers start where one saturated: the counts below it are known to pass.
                two_start = max(start, one["saturation_streams"])
                two = await saturation(path, 2, two_start, args, http, emulator, direct_rows)
                ratio = two["saturation_streams"] / one["saturation_streams"] if one["saturation_streams"] else None
                results[path] = {"one_worker": one, "two_workers": two, "ratio": ratio}
    finally:
        await procs.stop(emulator)
    return {"created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {k: str(v) for k, v in vars(args).items()},
            "machine": {"cpus": len(os.sched_getaffinity(0)), "loadavg_start": load0, "loadavg_end": os.getloadavg()},
            "paths": results}


def _cell(r: dict[str, Any]) -> str:
    streams = f"{r['saturation_streams']}" if r["saturated"] else f">= {r['saturation_streams']} (not saturated)"
    return f"{streams} ({r['cores']:.2f})" if r["cores"] else f"{streams} (whole cores)"


def render(report: dict[str, Any]) -> str:
    lines = ["| path | 1 worker: streams (cores) | 2 workers: streams (cores) | ratio | target |",
             "|---|---|---|---|---|"]
    for path, r in report["paths"].items():
        one, two = r["one_worker"], r["two_workers"]
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        verdict = ("meets" if r["ratio"] >= 1.7 else "misses") if r["ratio"] and one["saturated"] and two["saturated"] \
            else "undecided (raise --max-streams)"
        lines.append(f"| {path} | {_cell(one)} | {_cell(two)} | {ratio} | >= 1.7: {verdict} |")
    m = report["machine"]
    lines.append(f"\nload average {m['loadavg_start'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at the end")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", default="tts_ws,dg_live", help=f"comma-separated subset of {','.join(START)}")
    parser.add_argument("--core-share", type=float, default=0.3,
                        help="CPU quota per worker, in cores (0: no cgroup, whole cores; needs no root)")
    parser.add_argument("--max-streams", type=int, default=10_000, help="stop climbing above this count")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per step after the ramp")
    parser.add_argument("--json", type=Path, default=RESULTS / "scaling.json")
    args = parser.parse_args()
    args.paths = load.path_list(parser, args.paths, START)
    t0 = time.perf_counter()
    report = load.run_load(bench(args))
    report["duration_s"] = time.perf_counter() - t0
    print(render(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
