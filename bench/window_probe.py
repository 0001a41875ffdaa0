"""What a gateway process runs inside its primaries' windows: from a client connection's first bytes (the
upgrade request) to that session's first output. Installed by `bench/shadow_window_cost.py` in the gateways it
starts (a `sitecustomize` that imports this module when `$WINDOW_PROBE_DIR` is set); never in the serving code.

Per window it records CPU time, not wall time, so that it holds on a loaded machine: the event loop's thread
(`thread`), the whole process (`proc`: the pair recorder's and other threads too, which take the GIL the loop
needs), the sibling workers (`sib`, from /proc schedstat), and, of the loop thread's time, what ran as shadow
work: the shadow leg's task and vendor-socket reader steps (`leg`), the vendor socket's protocol callbacks
(`sock`), the shadow and trace addons' hooks (`addon.*`, on the primary's own path; `leg_init` is part of the
shadow addon's `session_start`), the router's shadow plan (`plan`), garbage collections (`gc<generation>`).
The probe's own reads of /proc are left out of every figure. Over the whole run it also counts collections
per generation with their CPU time (`gc_all`), and with `$WINDOW_PROBE_GCDUMP` set, what the young generation
held at its first 30 collections once serving (`gcdump`: that is how a reference cycle keeping every shadowed
unit's frames alive was found). SIGUSR1 writes the windows so far to `$WINDOW_PROBE_DIR/<pid>.json`.
"""

from __future__ import annotations

import collections
import collections.abc
import gc
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import procs  # bench/, on the gateway's PYTHONPATH (shadow_window_cost.py)

_thread = time.thread_time_ns
_proc = time.process_time_ns
_now = time.monotonic


class _State:
    def __init__(self) -> None:
        self.windows: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.pending: set[int] = set()  # server connections that have not sent their first bytes yet
        self.vendor_port = int(os.environ.get("WINDOW_PROBE_VENDOR_PORT", "0"))
        self.gc_t0 = 0
        self.gc_all: dict[str, list[int]] = {}  # generation -> [collections, thread ns] over the whole run
        self.gcdump: list[Any] = []  # with $WINDOW_PROBE_GCDUMP: the young generation at its collections
        self.gcdump_on = bool(os.environ.get("WINDOW_PROBE_GCDUMP"))


S = _State()


def _sibling_ns() -> int:
    """CPU ns of the other workers of this gateway (children of our parent, without us), every thread."""
    me, parent = os.getpid(), os.getppid()
    try:
        kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return 0
    return sum(procs.pid_cpu_ns(int(kid)) for kid in kids if int(kid) != me)


def _add(key: str, ns: int, n: int = 1) -> None:
    w = S.open
    if w is not None:
        w[key + "_ns"] = w.get(key + "_ns", 0) + ns
        w[key + "_n"] = w.get(key + "_n", 0) + n


MARKS = 4  # times kept per kind of event in a window: the first message and the answers that follow


def _mark(key: str) -> None:
    """The time since the open window's start of an event of kind `key` (its first `MARKS`)."""
    w = S.open
    if w is not None:
        marks = w.setdefault(key, [])
        if len(marks) < MARKS:
            marks.append(_now() - w["t0"])


def _start_window() -> None:
    w = {"t0": _now(), "sib0": _sibling_ns()}  # read before the window's own clocks: left out of them
    w["thread0"], w["proc0"] = _thread(), _proc()
    S.open = w


def _end_window() -> None:
    w = S.open
    if w is None:
        return
    S.open = None
    th, pr = _thread(), _proc()
    w["t1"] = _now()  # before the sibling read, which takes a few hundred us of /proc
    w["thread_ns"] = th - w.pop("thread0")
    w["proc_ns"] = pr - w.pop("proc0")
    w["sib_ns"] = _sibling_ns() - w.pop("sib0")
    S.windows.append(w)


class _Timed(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A coroutine whose steps are timed (thread CPU) while a window is open."""

    def __init__(self, coro: Any) -> None:
        self.coro = coro

    def send(self, value: Any) -> Any:
        if S.open is None:
            return self.coro.send(value)
        t = _thread()
        try:
            return self.coro.send(value)
        finally:
            _add("leg", _thread() - t)

    def throw(self, *args: Any) -> Any:
        t = _thread()
        try:
            return self.coro.throw(*args)
        finally:
            _add("leg", _thread() - t)

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Any:
        return self.coro.__await__()


def _wrap_coro(cls: type, name: str) -> None:
    orig = getattr(cls, name)

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _Timed(orig(self, *args, **kwargs))

    setattr(cls, name, timed)


def _wrap_timed(cls: type, name: str, key: str, when: Any = None) -> None:
    orig = getattr(cls, name)

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        if S.open is None or (when is not None and not when(self)):
            return orig(self, *args, **kwargs)
        t = _thread()
        try:
            return orig(self, *args, **kwargs)
        finally:
            _add(key, _thread() - t)

    setattr(cls, name, timed)


def _young_generation() -> dict[str, Any]:
    """What a young collection is about to walk: object count, commonest types, largest containers."""
    objs = gc.get_objects(0)
    types = collections.Counter(type(o).__name__ for o in objs)
    sized = (list, dict, tuple, set, collections.deque)
    big = sorted(((len(o), type(o).__name__) for o in objs if isinstance(o, sized)), reverse=True)[:8]
    return {"n": len(objs), "types": types.most_common(12), "big": big, "in_window": S.open is not None}


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        # serving (the young threshold raised by `gateway.heap`), not start-up: what the collection walks
        if S.gcdump_on and info["generation"] == 0 and len(S.gcdump) < 30 and gc.get_threshold()[0] >= 10_000:
            S.gcdump.append(_young_generation())
        S.gc_t0 = _thread()
        return
    ns = _thread() - S.gc_t0
    tally = S.gc_all.setdefault(str(info["generation"]), [0, 0])
    tally[0] += 1
    tally[1] += ns
    if S.open is not None:
        _add(f"gc{info['generation']}", ns)


def _is_vendor(proto: Any) -> bool:
    transport = getattr(proto, "transport", None)
    if transport is None:
        return False
    try:
        return bool(transport.get_extra_info("peername")[1] == S.vendor_port)
    except (TypeError, IndexError):
        return False


def install() -> None:
    from aiohttp import client_proto, web_protocol

    from gateway.addons import Tap
    from gateway.traffic.bridge import TraceAddon
    from gateway.traffic.legs import LegacySocket
    from gateway.traffic.shadow import Shadow
    from gateway.traffic.shadow_addon import ShadowAddon
    from gateway.traffic.shadow_leg import ShadowLeg

    made, received, lost = (web_protocol.RequestHandler.connection_made, web_protocol.RequestHandler.data_received,
                            web_protocol.RequestHandler.connection_lost)

    def connection_made(self: Any, transport: Any) -> Any:
        S.pending.add(id(self))
        return made(self, transport)

    def data_received(self: Any, data: bytes) -> Any:
        if id(self) in S.pending:
            S.pending.discard(id(self))
            if S.open is None:
                _start_window()
            else:
                S.open["overlap"] = S.open.get("overlap", 0) + 1
        _mark("client_rx_t")
        return received(self, data)

    def connection_lost(self: Any, exc: Any) -> Any:
        S.pending.discard(id(self))
        return lost(self, exc)

    web_protocol.RequestHandler.connection_made = connection_made  # type: ignore[method-assign]
    web_protocol.RequestHandler.data_received = data_received  # type: ignore[method-assign]
    web_protocol.RequestHandler.connection_lost = connection_lost  # type: ignore[method-assign]

    output, frame = Tap.output, Tap.frame

    def tap_output(self: Any, data: Any) -> Any:
        first = self.first_output is None and not self.flow.headless
        out = output(self, data)
        if first:
            _end_window()
        return out

    def tap_frame(self: Any, data: Any, t: Any = None) -> Any:
        w = S.open
        if w is not None and not self.flow.headless:
            if "frame_thread" not in w:
                w["frame_thread"] = _thread() - w["thread0"]
            _mark("frames_t")
        return frame(self, data, t)

    Tap.output = tap_output  # type: ignore[method-assign]
    Tap.frame = tap_frame  # type: ignore[method-assign]

    gradium_received = client_proto.ResponseHandler.data_received

    def gradium_data(self: Any, data: bytes) -> Any:
        if S.open is not None and not _is_vendor(self):
            _mark("gradium_t")
        return gradium_received(self, data)

    client_proto.ResponseHandler.data_received = gradium_data  # type: ignore[method-assign]
    from gateway.upstream.gradium import GradiumClient

    connect = GradiumClient.connect

    async def dial(self: Any, *args: Any, **kwargs: Any) -> Any:
        if S.open is not None:
            S.open["gradium_dial"] = S.open.get("gradium_dial", 0) + 1
        return await connect(self, *args, **kwargs)

    GradiumClient.connect = dial  # type: ignore[method-assign]
    _wrap_coro(ShadowLeg, "_run")
    _wrap_coro(LegacySocket, "_read")
    for name in ("data_received", "eof_received", "connection_lost", "connection_made"):
        _wrap_timed(client_proto.ResponseHandler, name, "sock", _is_vendor)
    for cls in (ShadowAddon, TraceAddon):
        for hook in ("session_start", "client_frame", "client_output", "session_end"):
            _wrap_timed(cls, hook, f"addon.{cls.__name__}.{hook}")
    _wrap_timed(Shadow, "plan", "plan")  # the router's sampling and plan, before the session starts
    _wrap_timed(ShadowLeg, "__init__", "leg_init")  # inside ShadowAddon.session_start (counted there too)
    gc.callbacks.append(_on_gc)
    signal.signal(signal.SIGUSR1, lambda *_: dump())


def dump() -> None:
    out = Path(os.environ["WINDOW_PROBE_DIR"]) / f"{os.getpid()}.json"
    out.write_text(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "windows": S.windows,
                                "gc_all": S.gc_all, "gcdump": S.gcdump}))
