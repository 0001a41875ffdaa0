"""Fault injection: what a test (or a benchmark driving an out-of-process emulator) can break.

`app[FAULTS]` is a mutable `Faults`; `POST /_emulator/faults` merges JSON into it and
`DELETE /_emulator/faults` resets it. Each request takes a snapshot when it starts, so changing
faults mid-stream never affects a stream already running, and `times` can limit a fault to the
next N matching requests (e.g. fail once, then recover, to test retries).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Literal

import orjson
from aiohttp import web

from gateway.emulator.stats import STATS, Stats
from gateway.emulator.stt_replay import REPLAY
from gateway.upstream import protocol as wire

ErrorShape = Literal["plain", "raw", "json_error", "json_detail"]
ERROR_SHAPES: tuple[str, ...] = ("plain", "raw", "json_error", "json_detail")
Transport = Literal["ws", "rest"]


@dataclass
class Faults:
    # Latency.
    ready_delay_s: float = 0.0  # before `ready`
    first_audio_delay_s: float = 0.0  # before the first TTS `audio` / first STT `text`
    frame_delay_s: float = 0.0  # slow stream: before every `audio` and `step` message
    # REST: answer every matching REST call with this status instead (specs §2 "Errors" shapes).
    http_status: int | None = None
    http_error_shape: ErrorShape = "plain"
    http_error_code: int = 1011  # the Gradium code inside the "plain" shape
    http_error_message: str = "Internal server error"
    # WebSocket: refuse the upgrade with this HTTP status (the auth-timing open question, §10.4).
    ws_reject_status: int | None = None
    # Streams (WS messages, NDJSON lines, raw audio chunks): after N messages, an error frame
    # (error line, or a truncated body for raw audio), or a TCP drop without a close frame.
    error_after_messages: int | None = None
    error_code: int = 1011
    error_message: str = "Internal server error"
    drop_after_messages: int | None = None
    # Scope: only requests whose path contains this; only the next `times` of them.
    match_path: str | None = None
    times: int | None = None

    def active(self, transport: Transport | None = None) -> bool:
        """Whether any fault is switched on (for this transport: WS and REST have their own)."""
        names = _TRIGGERS if transport is None else _TRIGGERS - _NOT_FOR[transport]
        return any(getattr(self, name) != _DEFAULTS[name] for name in names)

    def reset(self) -> None:
        """In place, so references a test holds (`app[FAULTS]`) see the reset."""
        for f in fields(self):
            setattr(self, f.name, f.default)

    def update(self, changes: dict[str, Any]) -> None:
        """Merge JSON-ish changes after checking names and types; raises ValueError."""
        known = {f.name: f for f in fields(self)}
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            checked[name] = _check(name, value)
        for name, value in checked.items():
            setattr(self, name, value)

    def take(self, path: str, transport: Transport) -> Faults | None:
        """The faults that apply to a request starting now, counting down `times`.

        A request only uses up `times` when a fault actually applies to it, so a REST-only fault
        with `times: 1` is not consumed by a WebSocket connection.
        """
        if not self.active(transport) or (self.match_path is not None and self.match_path not in path):
            return None
        snapshot = dataclasses.replace(self)
        if self.times is not None:
            self.times -= 1
            if self.times <= 0:
                self.reset()
        return snapshot

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Fields that switch a fault on; the others only shape or scope it.
_TRIGGERS = frozenset(
    {
        "ready_delay_s",
        "first_audio_delay_s",
        "frame_delay_s",
        "http_status",
        "ws_reject_status",
        "error_after_messages",
        "drop_after_messages",
    }
)
_NOT_FOR: dict[str, frozenset[str]] = {"ws": frozenset({"http_status"}), "rest": frozenset({"ws_reject_status"})}
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Faults)}


def _check(name: str, value: Any) -> Any:
    if name.endswith("_s"):
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a number >= 0")
        return float(value)
    if name in ("http_status", "ws_reject_status"):
        if value is not None and (not isinstance(value, int) or not 100 <= value <= 599):
            raise ValueError(f"{name} must be an HTTP status or null")
        return value
    if name in ("error_after_messages", "drop_after_messages", "times"):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"{name} must be an integer >= 0 or null")
        return value
    if name in ("error_code", "http_error_code"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer")
        return value
    if name == "http_error_shape":
        if value not in ERROR_SHAPES:
            raise ValueError(f"http_error_shape must be one of {', '.join(ERROR_SHAPES)}")
        return value
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    if name in ("http_error_message", "error_message") and value is None:
        raise ValueError(f"{name} must be a string")
    return value


FAULTS = web.AppKey("emulator_faults", Faults)


class Action(Enum):
    SEND = "send"
    ERROR = "error"
    DROP = "drop"


class FaultGate:
    """Applies one request's fault snapshot to its outgoing messages, in order."""

    def __init__(self, faults: Faults | None, stats: Stats) -> None:
        self.faults = faults
        self._stats = stats
        self.sent = 0
        self._first_output_done = False
        if faults is not None:
            stats.faults_applied += 1

    async def before(self, msg_type: str) -> Action:
        """Sleep as the faults ask, then say whether to send, fail or drop instead."""
        f = self.faults
        if f is None:
            return Action.SEND
        if f.drop_after_messages is not None and self.sent >= f.drop_after_messages:
            return Action.DROP
        if f.error_after_messages is not None and self.sent >= f.error_after_messages:
            return Action.ERROR
        if msg_type == wire.READY and f.ready_delay_s:
            await asyncio.sleep(f.ready_delay_s)
        elif msg_type in (wire.AUDIO, wire.TEXT) and not self._first_output_done:
            self._first_output_done = True
            if f.first_audio_delay_s:
                await asyncio.sleep(f.first_audio_delay_s)
        if msg_type in (wire.AUDIO, wire.STEP) and f.frame_delay_s:
            await asyncio.sleep(f.frame_delay_s)
        return Action.SEND

    def http_response(self) -> web.Response | None:
        """The canned REST failure, when `http_status` is set."""
        f = self.faults
        if f is None or f.http_status is None:
            return None
        status, message = f.http_status, f.http_error_message
        if f.http_error_shape == "json_error":
            return web.json_response({"error": message, "code": status}, status=status, dumps=_dumps)
        if f.http_error_shape == "json_detail":
            return web.json_response({"detail": message}, status=status, dumps=_dumps)
        text = message if f.http_error_shape == "raw" else f"error from server {f.http_error_code}: {message}"
        return web.Response(status=status, text=text, content_type="text/plain")


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


# -- control routes -------------------------------------------------------------------------------


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].to_json(), dumps=_dumps)


async def post_faults(request: web.Request) -> web.Response:
    try:
        changes = orjson.loads(await request.read())
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        request.app[FAULTS].update(changes)
    except (ValueError, orjson.JSONDecodeError) as exc:
        return web.json_response({"detail": str(exc)}, status=400, dumps=_dumps)
    return web.json_response(request.app[FAULTS].to_json(), dumps=_dumps)


async def delete_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].reset()
    return web.json_response(request.app[FAULTS].to_json(), dumps=_dumps)


def _stats(app: web.Application) -> dict[str, Any]:
    out = app[STATS].to_json()
    if (replay := app.get(REPLAY)) is not None:
        out["stt_replay"] = replay.counters()  # hits vs decodes: is the emulator's STT really cheap?
    return out


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(_stats(request.app), dumps=_dumps)


async def delete_stats(request: web.Request) -> web.Response:
    request.app[STATS].reset()
    if (replay := request.app.get(REPLAY)) is not None:
        replay.reset_counters()  # the counters only: what it learnt stays
    return web.json_response(_stats(request.app), dumps=_dumps)


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/_emulator/faults", get_faults)
    app.router.add_post("/_emulator/faults", post_faults)
    app.router.add_delete("/_emulator/faults", delete_faults)
    app.router.add_get("/_emulator/stats", get_stats)
    app.router.add_delete("/_emulator/stats", delete_stats)
