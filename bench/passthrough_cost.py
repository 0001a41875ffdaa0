"""What one REST passthrough request costs the gateway, in counts that hold on a loaded machine.

The stand-in vendor (a gateway on its own emulator) and the gateway under test (weight 0: every request is
passed through) run as separate processes; requests go one at a time, like `bench/run.py --passthrough`.
After untimed warm-up requests, the gateway under test is measured over `--requests` more:

    python bench/passthrough_cost.py --tool callgrind [--segment req|resp] [--keep DIR]
    python bench/passthrough_cost.py --tool strace          # syscalls per request; epoll_pwait = loop turns
    python bench/passthrough_cost.py --tool probe           # main-thread CPU time on the critical path
    python bench/passthrough_cost.py --tool opcodes --segment req   # Python bytecodes run, per function
    python bench/passthrough_cost.py --tool profile         # cProfile (with --segment: that part only)
    ... --bare                                              # the floor: a minimal aiohttp proxy instead

The critical path of a request has two parts: `req`, client request bytes in -> the request written to the
vendor, and `resp`, the vendor's first bytes in -> the first body bytes handed to the client's writer (what
the client's time to first audio waits for; a headers-only write does not end it). `--segment` counts only
one of them: under callgrind by toggling collection (CALLGRIND_TOGGLE_COLLECT, from a two-line C library
built on the fly); without it callgrind counts whole requests (every body chunk too). `--keep` leaves the
dump for `callgrind_annotate --inclusive=yes`. Valgrind makes the gateway slow, so more of the vendor's
body is buffered by the time it reads: `resp` counts there are higher than at full speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import paths
import procs
import traffic
import yaml

HERE = Path(__file__).resolve().parent
INPUT = paths.TtsInput.build("The quick brown fox jumps over the lazy dog.")


async def _requests(http: aiohttp.ClientSession, url: str, n: int) -> None:
    for _ in range(n):
        await paths.tts_rest_gateway(http, url, INPUT, "pcm_24000", paths.new_trace())


async def _gateway_under_test(vendor_url: str, emulator_url: str, log_dir: Path, prefix: list[str],
                              serve: str | None) -> procs.Proc:
    cfg = log_dir / "gw.yaml"
    cfg.write_text(yaml.safe_dump({"legacy": {p: {"base_url": vendor_url} for p in traffic.PROVIDERS},
                                   "traffic": {"default": {"gradium": 0}}}))
    port = procs.free_port()
    cmd = ["serve", "--host", procs.HOST, "--port", str(port), "--workers", "1"]
    argv = [*prefix, sys.executable, *([__file__, serve] if serve else ["-m", "gateway.cli"]), *cmd]
    env = procs._env(GRADIUM_BASE_URL=f"{emulator_url}/api", GATEWAY_CONFIG=str(cfg), PYTHONHASHSEED="0",
                     PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    procs.START_TIMEOUT_S = 600.0  # python's start-up under valgrind
    return await procs._start("gateway", argv, env, port, log_dir, http=True)


async def measure(tool: str, n: int, warm: int, keep: Path | None, segment: str | None) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="passthrough_cost."))
    out = (keep or log_dir) / "callgrind.out"
    running: list[procs.Proc] = []
    try:
        vendor_emulator = await procs.start_emulator(log_dir / "vendor")
        running.append(vendor_emulator)
        vendor = await traffic._gateway("standin-vendor", vendor_emulator.url, {}, log_dir)
        running.append(vendor)
        emulator = await procs.start_emulator(log_dir)
        running.append(emulator)
        prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"] \
            if tool == "callgrind" else []
        if segment:
            prefix += ["--collect-atstart=no"] if prefix else []
            os.environ["CG_SEGMENT"] = segment
        if tool in ("profile", "opcodes") and segment:
            os.environ["PROFILE_SEGMENT"] = "opcodes" if tool == "opcodes" else "1"
        probed = tool == "probe" or segment or os.environ.get("BARE_PROXY")
        entry = "--serve-probe" if probed else "--serve" if tool in ("profile", "opcodes") else None
        gw = await _gateway_under_test(vendor.url, emulator.url, log_dir, prefix, entry)
        running.append(gw)
        pid = gw.process.pid
        async with aiohttp.ClientSession() as http:
            await _requests(http, gw.url, warm)
            if tool == "callgrind":
                _control("-i", "on", pid)
                await _requests(http, gw.url, 3)  # valgrind translates the code it now instruments
                _control("-z", pid)
                if segment:
                    os.kill(pid, signal.SIGUSR1)
                    await asyncio.sleep(1)
                await _requests(http, gw.url, n)
                _control("-d", pid)
                await asyncio.sleep(1)
                dumps = sorted(out.parent.glob(out.name + "*"), key=lambda p: p.stat().st_mtime)
                total = _total(dumps[-1])
                what = {"req": "client request -> vendor write", "resp": "vendor bytes -> first client body write"}.get(
                    segment or "", "whole request")
                print(f"callgrind: {total / n:,.0f} instructions per request, {what} ({n} requests; dump {dumps[-1]})")
            elif tool == "strace":
                text = await _strace(pid, lambda: _requests(http, gw.url, n), log_dir)
                if os.environ.get("STRACE_LOG"):
                    Path(os.environ["STRACE_LOG"]).write_text(text)
                else:
                    _print_strace(text, n)
            else:
                os.kill(pid, signal.SIGUSR1)
                await asyncio.sleep(0.5)
                await _requests(http, gw.url, n)
                os.kill(pid, signal.SIGUSR2)
                await asyncio.sleep(2)
                for name in ("profile.txt", "segment_profile.txt"):
                    if (log_dir / name).exists():
                        print((log_dir / name).read_text())
    finally:
        for proc in reversed(running):
            await procs.stop(proc)
        if keep is None:
            shutil.rmtree(log_dir, ignore_errors=True)


def _control(*args: object) -> None:
    subprocess.run(["callgrind_control", *map(str, args)], check=True, capture_output=True)


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no total in {dump}")


async def _strace(pid: int, work: object, log_dir: Path) -> str:
    path = log_dir / "strace.txt"
    flags = ["-c"] if not os.environ.get("STRACE_LOG") else ["-tt", "-s", "60"]
    st = subprocess.Popen(["strace", "-f", *flags, "-o", str(path), "-p", str(pid)], stderr=subprocess.DEVNULL)
    await asyncio.sleep(1.0)  # attached to every thread
    await work()  # type: ignore[operator]
    await asyncio.sleep(0.3)
    st.send_signal(signal.SIGINT)
    st.wait(10)
    return path.read_text()


def _print_strace(text: str, n: int) -> None:
    print(f"strace -c, per request ({n} requests):")
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)$", line)
        if m:
            calls, errors, name = int(m.group(1)), int(m.group(2) or 0), m.group(3)
            print(f"  {name:20s} {calls / n:6.2f}" + (f"  (errors {errors / n:.2f})" if errors else ""))
        elif "total" in line:
            print("  total " + line.split()[-2 if len(line.split()) > 4 else -1])


def _serve_profiled() -> None:
    """The gateway's `serve`, with a profiler switched on by SIGUSR1 and off (stats to a file) by SIGUSR2."""
    import cProfile
    import pstats

    from gateway.cli import main

    prof = cProfile.Profile()
    out = Path(os.environ["GATEWAY_CONFIG"]).parent / "profile.txt"

    def stop(*_: object) -> None:
        prof.disable()
        with out.open("w") as f:
            stats = pstats.Stats(prof, stream=f)
            stats.sort_stats("ncalls").print_stats(60)
            stats.sort_stats("tottime").print_stats(40)

    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["gradium-gateway", *sys.argv[2:]]
    with contextlib.suppress(SystemExit):
        main()


def _serve_probed() -> None:
    """The gateway's `serve`, its main thread's CPU time stamped (between SIGUSR1 and SIGUSR2) at the four
    edges of a passthrough request's critical path: client bytes in, vendor request out, vendor bytes in,
    client bytes out. Thread CPU time, not wall time: what the gateway spends, whatever else the machine runs."""
    import statistics
    import time

    from aiohttp import client_proto, http_writer, web_protocol

    from gateway.cli import main

    out = Path(os.environ["GATEWAY_CONFIG"]).parent / "profile.txt"
    on = [False]
    marks: dict[str, tuple[int, int]] = {}  # edge: (thread CPU ns, wall ns)
    rows: list[tuple[int, ...]] = []
    segment = os.environ.get("CG_SEGMENT")  # under callgrind: collect only this part of the path
    toggle = _callgrind_toggle() if segment and not os.environ.get("PROFILE_SEGMENT") else None
    if segment and os.environ.get("PROFILE_SEGMENT") == "opcodes":  # bytecodes run, per function
        from collections import Counter

        own: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        calls: Counter[str] = Counter()
        state = [False]

        def name(code: object) -> str:
            c = code  # type: Any
            return f"{c.co_filename.replace(str(HERE.parent) + '/', '').split('site-packages/')[-1]}:{c.co_qualname}"

        def tracer(frame: Any, event: str, arg: object) -> object:
            frame.f_trace_opcodes = True
            if event == "call":
                calls[name(frame.f_code)] += 1
            elif event == "opcode":
                n = name(frame.f_code)
                own[n] += 1
                seen = set()
                f = frame
                while f is not None:
                    k = name(f.f_code)
                    if k not in seen:
                        incl[k] += 1
                        seen.add(k)
                    f = f.f_back
            return tracer

        def toggle() -> None:
            state[0] = not state[0]
            sys.settrace(tracer if state[0] else None)
            if state[0]:
                sys._getframe().f_back.f_trace = None  # type: ignore[union-attr]

        def dump() -> None:
            n = max(1, len(rows))
            with (Path(os.environ["GATEWAY_CONFIG"]).parent / "segment_profile.txt").open("w") as f:
                f.write(f"bytecodes per request: {sum(own.values()) / n:.0f}\n\ninclusive:\n")
                for k, v in incl.most_common(80):
                    f.write(f"{v / n:9.1f} {calls[k] / n:6.2f} {k}\n")
                f.write("\nown:\n")
                for k, v in own.most_common(60):
                    f.write(f"{v / n:9.1f} {calls[k] / n:6.2f} {k}\n")
    elif segment and os.environ.get("PROFILE_SEGMENT"):  # cProfile over that part of the path only
        import cProfile
        import pstats

        prof = cProfile.Profile()
        state = [False]

        def toggle() -> None:
            state[0] = not state[0]
            (prof.enable if state[0] else prof.disable)()

        def dump() -> None:
            with (Path(os.environ["GATEWAY_CONFIG"]).parent / "segment_profile.txt").open("w") as f:
                stats = pstats.Stats(prof, stream=f)
                stats.sort_stats("cumulative").print_stats(400)
                stats.sort_stats("tottime").print_stats(50)

    def mark(name: str, collect: bool) -> None:
        marks[name] = (time.thread_time_ns(), time.perf_counter_ns())
        if toggle is not None and collect:
            toggle()

    def wrap(cls: type, name: str, edge: object) -> None:
        orig = getattr(cls, name)

        def probed(self: object, *args: object, **kwargs: object) -> object:
            if on[0]:
                edge(self, *args)  # type: ignore[operator]
            return orig(self, *args, **kwargs)

        setattr(cls, name, probed)

    def client_in(_: object, *__: object) -> None:
        if not marks or "out" in marks:
            marks.clear()
            mark("in", segment == "req")

    def vendor_in(_: object, data: bytes = b"", *__: object) -> None:
        if not data:  # aiohttp's client calls itself with b"" when it resumes reading: no bytes came
            return
        if "sent" in marks and "resp" not in marks:
            mark("resp", segment == "resp")
        if "resp" in marks and "out" not in marks:  # the bytes the first body write relays came last
            marks["last"] = (time.thread_time_ns(), time.perf_counter_ns())

    def sent(writer: object, *_: object) -> None:
        to_vendor = isinstance(writer._protocol, client_proto.ResponseHandler)  # type: ignore[attr-defined]
        if to_vendor and "in" in marks and "sent" not in marks:
            mark("sent", segment == "req")

    def body_out(writer: object, chunk: bytes = b"", *_: object) -> None:
        """The first body bytes handed to the client's writer: what its time to first audio waits for
        (a headers-only write at `prepare` is not it)."""
        to_client = not isinstance(writer._protocol, client_proto.ResponseHandler)  # type: ignore[attr-defined]
        if to_client and chunk and "resp" in marks and "out" not in marks:
            mark("out", segment == "resp")
            m = marks
            rows.append((*(m[b][c] - m[a][c] for c in (0, 1) for a, b in (("in", "sent"), ("resp", "out"))),
                         m["resp"][1] - m["sent"][1], m["out"][1] - m["last"][1]))

    wrap(web_protocol.RequestHandler, "data_received", client_in)
    wrap(client_proto.ResponseHandler, "data_received", vendor_in)
    wrap(http_writer.StreamWriter, "_write", sent)
    wrap(http_writer.StreamWriter, "_writelines", sent)
    wrap(http_writer.StreamWriter, "write", body_out)
    with contextlib.suppress(ImportError):  # the gateway's own vendor client (REST passthrough), where it has one
        from gateway.upstream import relay

        def relay_sent(_: object, *__: object) -> None:
            """`send` writes the request head (and a body in memory) before its first wait."""
            if "in" in marks and "sent" not in marks:
                mark("sent", segment == "req")

        wrap(relay.VendorConnection, "data_received", vendor_in)
        wrap(relay.VendorConnection, "send", relay_sent)

    def stop(*_: object) -> None:
        on[0] = False
        if segment and os.environ.get("PROFILE_SEGMENT"):
            dump()
        med = [statistics.median(r[i] for r in rows) / 1e3 for i in range(6)]
        out.write_text(f"critical-path CPU, median of {len(rows)} requests: client request -> vendor write "
                       f"{med[0]:.1f} us, vendor bytes -> first client body write {med[1]:.1f} us, "
                       f"sum {med[0] + med[1]:.1f} us\n"
                       f"wall time, same edges: {med[2]:.1f} us, {med[3]:.1f} us, sum {med[2] + med[3]:.1f} us"
                       f" (the vendor: request written -> its first bytes read {med[4]:.1f} us; its last read"
                       f" before the first body write -> that write {med[5]:.1f} us)\n")

    signal.signal(signal.SIGUSR1, lambda *_: on.__setitem__(0, True))
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["gradium-gateway", *sys.argv[2:]]
    if os.environ.get("BARE_PROXY"):
        _bare_proxy(sys.argv[sys.argv.index("--port") + 1])
        return
    with contextlib.suppress(SystemExit):
        main()


def _callgrind_toggle() -> object:
    """CALLGRIND_TOGGLE_COLLECT (valgrind's client request), from a two-line C library built here."""
    import ctypes

    d = Path(tempfile.mkdtemp(prefix="cgtoggle."))
    (d / "t.c").write_text("#include <valgrind/callgrind.h>\nvoid toggle(void) { CALLGRIND_TOGGLE_COLLECT; }\n")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(d / "t.so"), str(d / "t.c")], check=True)
    return ctypes.CDLL(str(d / "t.so")).toggle


def _bare_proxy(port: str) -> None:
    import bare_proxy

    vendor = yaml.safe_load(Path(os.environ["GATEWAY_CONFIG"]).read_text())["legacy"]["elevenlabs"]["base_url"]
    bare_proxy.serve(procs.HOST, int(port), vendor)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--serve", "--serve-probe"):
        (_serve_profiled if sys.argv[1] == "--serve" else _serve_probed)()
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", choices=["callgrind", "strace", "profile", "probe", "opcodes"], default="callgrind")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--keep", type=Path, help="directory for the callgrind dump and logs")
    ap.add_argument("--segment", choices=["req", "resp"], help="callgrind: count only this part of the critical path")
    ap.add_argument("--bare", action="store_true", help="measure a minimal aiohttp proxy instead (the floor)")
    args = ap.parse_args()
    if args.bare:
        os.environ["BARE_PROXY"] = "1"
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    asyncio.run(measure(args.tool, args.requests, args.warmup, args.keep, args.segment))


if __name__ == "__main__":
    main()
