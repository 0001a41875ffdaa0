"""Runs the generated cases against a live gateway and classifies what comes back: 5xx, hangs (no answer
within the deadline), unshaped errors (no provider request id / not the declared JSON), the key echoed
back, internal-error closes on sockets, and upstream sockets left open once everything is over."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.dialects.common import GRADIUM, MAPPINGS
from gateway.emulator.stats import STATS
from tests.conftest import Gateway
from tests.fuzz.cases import SECRET, HttpCase, WsSession, http_case, ws_session
from tests.gateway.rawhttp import parse_response

RID = {"elevenlabs": "request-id", "deepgram": "dg-request-id", "cartesia": "x-request-id"}
LEAK_MARK = SECRET[-12:].encode()  # the distinctive part of the key


@dataclass
class Findings:
    http_cases: int = 0
    ws_sessions: int = 0
    statuses: Counter = field(default_factory=Counter)
    ws_closes: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    unshaped: list[str] = field(default_factory=list)
    echoed_key: list[str] = field(default_factory=list)
    ws_internal: list[str] = field(default_factory=list)
    ws_text_refused: list[str] = field(default_factory=list)  # Deepgram live: 1008 on text it should ignore
    sockets_left_open: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"http_cases": self.http_cases, "ws_sessions": self.ws_sessions, "5xx": len(self.server_errors),
                "hangs": len(self.hangs), "unshaped_errors": len(self.unshaped), "echoed_keys": len(self.echoed_key),
                "ws_internal_errors": len(self.ws_internal), "dg_text_frames_refused": len(self.ws_text_refused),
                "sockets_left_open": self.sockets_left_open, "seconds": round(self.seconds, 1),
                "statuses": dict(sorted(self.statuses.items())), "ws_closes": dict(sorted(self.ws_closes.items()))}

    @property
    def defects(self) -> list[str]:
        return [*self.server_errors, *self.hangs, *self.unshaped, *self.echoed_key, *self.ws_internal]


def _routes(gw: Gateway) -> dict[str, list[tuple[str, str, str, bool]]]:
    return {p: [(r.name, r.method, r.path, r.is_ws) for r in m.routes.values()]
            for p, m in gw.app[MAPPINGS].items()}


async def mint_tokens(gw: Gateway) -> dict[str, str]:
    out: dict[str, str] = {}
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.http + "/v1/single-use-token/realtime_scribe", headers={"xi-api-key": SECRET}) as r:
            out["elevenlabs"] = (await r.json())["token"]
        async with s.post(gw.http + "/v1/auth/grant", headers={"Authorization": f"Token {SECRET}"}, json={}) as r:
            out["deepgram"] = (await r.json())["access_token"]
        async with s.post(gw.http + "/access-token", json={"grants": {"stt": True}},
                          headers={"X-API-Key": SECRET, "Cartesia-Version": "2026-03-01"}) as r:
            out["cartesia"] = (await r.json())["token"]
    return out


def _request_bytes(case: HttpCase) -> tuple[bytes, bytes, bool]:
    head = f"{case.method} {case.target} HTTP/{case.version}\r\nHost: fuzz\r\nConnection: close".encode()
    for k, v in case.headers:
        head += b"\r\n" + k + b": " + v
    body, eof = case.body, False
    if case.framing == "chunked":
        head += b"\r\nTransfer-Encoding: chunked"
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    elif case.framing == "broken_chunked":
        head += b"\r\nTransfer-Encoding: chunked"
        body = b"zz\r\n" + body[:10] + b"\r\n"
        eof = True
    elif case.framing == "short":
        head += f"\r\nContent-Length: {len(body) + 100}".encode()
        eof = True
    elif body or case.method in ("POST", "PUT", "PATCH"):
        head += f"\r\nContent-Length: {len(body)}".encode()
    return head + b"\r\n\r\n", body, eof


async def run_http(gw: Gateway, case: HttpCase, found: Findings, deadline: float) -> None:
    u = urlsplit(gw.http)
    head, body, eof = _request_bytes(case)
    label = f"{case.method} {case.target[:120]!r} v{case.version} {case.framing}"
    data = b""
    try:
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        try:
            writer.write(head + body)
            if eof:
                writer.write_eof()
            await writer.drain()
            async with asyncio.timeout(deadline):
                while chunk := await reader.read(65536):
                    data += chunk
        finally:
            writer.close()
    except TimeoutError:
        found.hangs.append(label)
        return
    except (ConnectionError, OSError):
        pass  # the server may close on a request it refused at the framing level
    found.http_cases += 1
    if not data:
        return  # connection closed without an answer: aiohttp's choice for unparseable garbage
    try:
        resp = parse_response(data)
    except (ValueError, IndexError):
        found.unshaped.append(f"{label}: unparseable response {data[:80]!r}")
        return
    found.statuses[resp.status] += 1
    if LEAK_MARK in data:
        found.echoed_key.append(f"{label}: {resp.status}")
    if resp.status >= 500:
        found.server_errors.append(f"{label}: {resp.status} {resp.body[:200]!r}")
    elif resp.status >= 400 and case.method != "HEAD":
        # (a path two providers share, or one normalised away, may rightly take another provider's shape)
        has_id = any(resp.header(h) for h in RID.values())
        ctype = resp.header("content-type") or ""
        ok_body = bool(resp.body)
        if ctype.startswith("application/json"):
            try:
                ok_body = isinstance(orjson.loads(resp.body), dict)
            except orjson.JSONDecodeError:
                ok_body = False
        elif not ctype.startswith("text/plain") or case.provider != "cartesia":
            ok_body = False  # only Cartesia's older API versions answer errors in plain text
        if not (has_id and ok_body):
            found.unshaped.append(f"{label}: {resp.status} {ctype} {resp.body[:120]!r}")
        if case.provider == "deepgram" and case.method == "GET" and not resp.header("dg-error") and \
                resp.status in (400, 401, 403, 404, 405) and _is_ws_path(gw, case.target):
            found.unshaped.append(f"{label}: Deepgram refusal without dg-error: {resp.status} {resp.headers}")


def _is_ws_path(gw: Gateway, target: str) -> bool:
    path = target.split("?", 1)[0].removeprefix("/deepgram")
    return path in ("/v1/listen", "/v2/listen", "/v1/speak")


async def run_ws(gw: Gateway, sess: WsSession, found: Findings, deadline: float) -> None:
    label = f"WS {sess.target[:120]!r} {[k for k in sess.headers]} {len(sess.frames)} frames {sess.ending}"
    received: list[str] = []
    timeout = aiohttp.ClientWSTimeout(ws_close=deadline)
    try:
        async with aiohttp.ClientSession() as s, asyncio.timeout(deadline * 3):
            try:
                ws = await s.ws_connect(gw.ws + sess.target, headers=sess.headers, timeout=timeout,
                                        max_msg_size=0, autoping=True)
            except aiohttp.WSServerHandshakeError as e:
                found.ws_sessions += 1
                found.ws_closes[f"http_{e.status}"] += 1
                hdrs = e.headers or {}
                if e.status >= 500:
                    found.server_errors.append(f"{label}: handshake {e.status}")
                elif not any(hdrs.get(h) for h in RID.values()):
                    found.unshaped.append(f"{label}: handshake {e.status} without a request id")
                elif sess.provider == "deepgram" and not hdrs.get("dg-error"):
                    found.unshaped.append(f"{label}: handshake {e.status} without dg-error")
                if LEAK_MARK.decode() in str(hdrs):
                    found.echoed_key.append(f"{label}: handshake headers")
                return
            found.ws_sessions += 1
            last_text = ""
            for kind, payload in sess.frames:
                if ws.closed:
                    break
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await (ws.send_str(payload) if kind == "text" else ws.send_bytes(payload))
                await asyncio.sleep(0)
            if sess.ending == "abort":
                if ws._response.connection is not None and ws._response.connection.transport is not None:
                    ws._response.connection.transport.abort()
                found.ws_closes["abort"] += 1
                return
            if sess.ending == "close":
                await ws.close()
            else:  # wait: read until the server ends it or goes quiet, then close
                while True:
                    try:
                        msg = await ws.receive(timeout=3)
                    except TimeoutError:
                        break  # quiet: an open socket with nothing owed is not a hang
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        received.append(msg.data)
                        last_text = msg.data
                    elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                                      aiohttp.WSMsgType.ERROR):
                        break
                await ws.close()
            code = ws.close_code
            found.ws_closes[str(code)] += 1
            if code == 1011 and "nternal" in last_text:
                found.ws_internal.append(f"{label}: 1011 {last_text[:160]}")
            if code == 1008 and sess.provider == "deepgram" and "/listen" in sess.target and "SchemaError" in last_text:
                found.ws_text_refused.append(f"{label}: {last_text[:160]}")
            if any(LEAK_MARK.decode() in t for t in received):
                found.echoed_key.append(f"{label}: in a message")
    except TimeoutError:
        found.hangs.append(label)
    except (aiohttp.ClientError, ConnectionError, OSError):
        found.ws_closes["client_error"] += 1


async def sockets_left_open(gw: Gateway, wait_s: float = 15.0) -> int:
    """Upstream sockets neither closed nor idle in the pool, once the gateway had time to settle."""
    stats = gw.emulator.app[STATS]
    pool = gw.app[GRADIUM]
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        if stats.ws_active == pool.idle_count():
            return 0
        await asyncio.sleep(0.1)
    return stats.ws_active - pool.idle_count()


async def fuzz(gw: Gateway, seed: int, http_per_dialect: int, ws_per_dialect: int, concurrency: int = 16,
               deadline: float = 30.0) -> Findings:
    rng = random.Random(seed)
    routes = _routes(gw)
    tokens = await mint_tokens(gw)
    found = Findings()
    started = time.monotonic()
    jobs: list[Any] = []
    for provider in sorted(routes):
        jobs += [("http", http_case(rng, provider, routes[provider], tokens)) for _ in range(http_per_dialect)]
        jobs += [("ws", ws_session(rng, provider, routes[provider], tokens)) for _ in range(ws_per_dialect)]
    rng.shuffle(jobs)
    gate = asyncio.Semaphore(concurrency)

    async def one(kind: str, job: Any) -> None:
        async with gate:
            if kind == "http":
                await run_http(gw, job, found, deadline)
            else:
                await run_ws(gw, job, found, deadline)

    await asyncio.gather(*(one(k, j) for k, j in jobs))
    found.sockets_left_open = await sockets_left_open(gw)
    found.seconds = time.monotonic() - started
    return found
