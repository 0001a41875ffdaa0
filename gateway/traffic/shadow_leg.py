"""One shadow leg: its own task, queue, deadlines, budget and outcome (specs/traffic.md §4.2-4.4).

The primary only `offer`s frames and marks the end of its input; everything else happens here, off the
primary's path. See `shadow.py` for how a leg is planned.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import structlog
from multidict import CIMultiDict, MultiDict

from gateway.errors import GatewayError
from gateway.events import NOT_UPGRADED
from gateway.session.headless import HeadlessSession
from gateway.state.base import StateUnavailable
from gateway.traffic.budget import LegAccount
from gateway.traffic.legacy import ws_request_id
from gateway.traffic.legs import (
    END,
    FrameQueue,
    GradiumSession,
    LegacySocket,
    LegStats,
    ShadowApp,
    parse_query,
    strip_message_credentials,
    text_chars,
)
from gateway.traffic.loopback import SECRET_HEADER
from gateway.traffic.shadow import CONNECT_TIMEOUT_S, DEFER_CAP_S, Shadow, ShadowPlan
from gateway.traffic.shadow_http import leg_headers, leg_query, send
from gateway.traffic.stt_cost import upload_seconds
from gateway.traffic.tee import BodyTee
from gateway.upstream.passthrough import PassthroughError, VendorRefusal, dial_ws, ssl_context

log = structlog.get_logger("gateway.shadow")


class ShadowLeg:
    """`candidate`: for a noise copy, its unit's candidate leg: the copy asks for its place only after that
    leg did (the candidate has the first claim on caps), shares its primary's stats, and a copy of the
    candidate's side is compared with it (`ref`: the pair is complete only once that leg ended too)."""

    def __init__(self, shadow: Shadow, plan: ShadowPlan, candidate: ShadowLeg | None = None) -> None:
        self.shadow = shadow
        self.plan = plan
        self.candidate = candidate
        self.ref = candidate if candidate is not None and plan.side != plan.primary else None
        self.admitted = asyncio.Event()  # set once the leg's admission was decided, either way
        self.queue = FrameQueue(plan.rule.queue)
        self.stats = LegStats(plan.side)
        self.primary = candidate.primary if candidate is not None else LegStats(plan.primary)
        self.traces: dict[str, Any] = {}  # "p"/"s" -> the session's trace, when a trace addon observed it
        self.connect_ms: float | None = None
        self.outcome: str | None = None
        self.started = time.monotonic()
        self.lags: list[float] = []
        self.account = LegAccount(shadow.budget, plan.tenant, plan.side, plan.pair_id, plan.rule.budget,
                                  vendor=plan.unit.provider)
        self.cost = self.account.cost  # what the leg spent, per unit
        self.primary_done = asyncio.Event()
        self.deferred_until = self.started
        self._started = False
        self.task: asyncio.Task[None] | None = None
        # a TTS leg starts once the primary's first output went out (at most DEFER_CAP_S later): see `start`
        self._timer = asyncio.get_running_loop().call_later(DEFER_CAP_S, self.start) \
            if plan.unit.kind == "tts" else None
        if self._timer is None:
            self.start()

    def start(self) -> None:
        """The leg's task. An STT leg starts with its unit: live audio keeps its pace. A TTS leg starts at the
        primary's first output (or the end of its input, a drop, `DEFER_CAP_S`): its task, admission (shared
        state), connect (a TLS handshake) and the vendor's first work are CPU that would otherwise be taken
        from the primary's time to first audio, on the same event loop. Its own latencies count from its own
        sends, so they do not change; the frames wait in the queue meanwhile (left out of the queue lag)."""
        if self.task is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self.deferred_until = time.monotonic()
        self.task = asyncio.create_task(self._run(), name=f"shadow:{self.plan.pair_id}")
        self.shadow.metrics.shadow_inflight.labels(self.plan.side).inc()

    # -- the primary's side: never blocks ---------------------------------------------------------
    def offer(self, data: str | bytes, t: float | None = None) -> None:
        if self.outcome is not None:
            return
        if not self.queue.offer(data, len(data), t):
            self.drop("dropped_overflow")

    def end_input(self) -> None:
        self.primary_done.set()
        self.start()
        if not self.plan.route.is_ws:
            return  # REST: the leg's input is the request body
        if self.outcome is None:
            self.queue.offer(END, 0) or self.drop("dropped_overflow")

    def drop(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
            # a task cancelled before its first step would never enter `_run`, whose `finally` settles the
            # budget and counts the outcome: one not started yet is left to start, and stops at once
            if self.task is None:
                self.start()
            elif self._started:
                self.task.cancel()

    # -- the leg's own task -------------------------------------------------------------------------
    async def _run(self) -> None:
        self._started = True
        conn: LegacySocket | GradiumSession | None = None
        try:
            if self.outcome is not None:  # dropped before it started
                return
            plan = self.plan
            log.info("shadow.start", pair_id=plan.pair_id, primary=plan.primary, shadow_target=plan.side,
                     pair_kind=plan.pair_kind, provider=plan.unit.provider, route=plan.unit.route,
                     request_id=plan.primary_request_id)
            if self.candidate is not None:
                await self.candidate.admitted.wait()
            refused = await self.account.admit()
            self.admitted.set()
            if refused is not None:
                self.outcome = refused
                return
            if not self.plan.route.is_ws:
                await self._rest()
                return
            t0 = time.monotonic()
            conn = await self._open()
            self.connect_ms = round((time.monotonic() - t0) * 1000, 2)
            async with asyncio.timeout(self.plan.rule.max_unit_s):
                await self._feed(conn)
            try:
                async with asyncio.timeout(self.plan.rule.drain_timeout_s):
                    await conn.finished()
            except TimeoutError:
                pass  # a shadow that keeps its socket open after the input ended: what it said is kept
            self.outcome = self.outcome or "completed"
        except asyncio.CancelledError:
            self.outcome = self.outcome or "shadow_error"
        except TimeoutError:
            self.outcome = self.outcome or "timeout"
        except VendorRefusal as r:
            self.outcome = "vendor_throttled" if r.status == 429 else "shadow_error"
        except BudgetRefused:
            # nothing sent yet: the whole leg was refused; else only a prefix of the unit was shadowed
            self.outcome = "truncated_budget" if self.stats.frames_in else "dropped_budget"
        except StateUnavailable:
            self.outcome = "state_unavailable"  # spend cannot be accounted for: the leg stops
        except (PassthroughError, GatewayError, aiohttp.ClientError, OSError) as exc:
            log.info("shadow.leg_error", pair_id=self.plan.pair_id, error=type(exc).__name__)
            self.outcome = self.outcome or "shadow_error"
        except Exception:
            log.exception("shadow.internal_error", pair_id=self.plan.pair_id)
            self.outcome = "shadow_error"
        finally:
            if conn is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(conn.close())
            self.admitted.set()
            if self.ref is not None:  # a noise copy of the candidate: its pair needs that leg's end too
                self.ref.start()
                with contextlib.suppress(BaseException):
                    await asyncio.wait({self.ref.task})
            await self._finish()

    async def _rest(self) -> None:
        """One request to the other side with the primary's body, once the primary has it all; then the
        primary's end, briefly. A Gradium leg goes to the gateway's own handlers on loopback."""
        plan = self.plan
        body = await self._rest_body()
        if body is None:
            return
        if plan.unit.kind == "tts":
            await self._spend(body.decode("utf-8", "replace"))
        else:
            query = MultiDict(parse_query(plan.raw_query))
            await self._charge("stt_seconds", await upload_seconds(body, plan.headers.get("Content-Type", ""), query))
        provider = plan.unit.provider
        if plan.side == "gradium":
            base = await self.shadow.loopback.base_url() + f"/{provider}"
            ssl_opt, connect_s = False, CONNECT_TIMEOUT_S
        else:
            vendor = self.shadow.legacy[provider]
            base, ssl_opt, connect_s = vendor.base_url, ssl_context(vendor.ca_file), vendor.connect_timeout_s
        query = leg_query(plan.mapping, plan.raw_query, plan.side)
        url = base + _route_path(plan) + ("?" + query if query else "")
        headers = leg_headers(plan.mapping, plan.headers, plan.key, plan.pair_id)
        if plan.side == "gradium":
            headers[SECRET_HEADER] = self.shadow.loopback.secret
        status = await send(self.shadow.session_of(), plan.method, url, headers, body, self.stats, ssl_opt=ssl_opt,
                            total_s=plan.rule.max_unit_s, connect_s=connect_s)
        if status == 429:
            self.outcome = "vendor_throttled"
        elif status >= 400:
            self.outcome = "shadow_error"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(plan.rule.drain_timeout_s):
                await self.primary_done.wait()
        self.outcome = self.outcome or "completed"

    async def _rest_body(self) -> bytes | None:
        """The body as the primary received it; None (and the outcome) when there is none to send."""
        source = self.plan.body
        if not isinstance(source, BodyTee):
            return source
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.plan.rule.max_unit_s):
                await source.done.wait()
        body = source.body()
        if body is None:  # larger than shadow.max_body_bytes, or the primary never read it to its end
            self.outcome = "dropped_overflow" if source.overflow else "shadow_error"
        return body

    def _vendor_target(self, ws: bool) -> tuple[str, CIMultiDict[str]]:
        plan = self.plan
        vendor = self.shadow.legacy[plan.unit.provider]
        assert plan.mapping.legacy is not None
        facts = plan.mapping.legacy
        query = leg_query(plan.mapping, plan.raw_query, "legacy")
        url = (vendor.ws_url if ws else vendor.base_url) + _route_path(plan) + ("?" + query if query else "")
        headers = CIMultiDict({"X-Gateway-Pair-Id": plan.pair_id,
                               facts.auth_header: facts.auth_value.replace("$key", plan.key)})
        return url, headers

    async def _open(self) -> LegacySocket | GradiumSession:
        plan = self.plan
        if plan.side == "gradium":
            return self._gradium()
        vendor = self.shadow.legacy[plan.unit.provider]
        url, headers = self._vendor_target(ws=True)
        ws = await dial_ws(self.shadow.session_of(), url, headers, [], ssl_opt=ssl_context(vendor.ca_file),
                           connect_timeout_s=vendor.connect_timeout_s, max_msg_size=16 * 1024 * 1024)
        self.stats.upstream_request_id = ws_request_id(ws, plan.mapping)
        return LegacySocket(ws, self.stats)

    def _gradium(self) -> GradiumSession:
        plan = self.plan
        assert plan.mapping.legacy is not None
        facts = plan.mapping.legacy
        creds = {s.source.partition(".")[2].lower() for s in plan.mapping.credentials}
        query = MultiDict((k, v) for k, v in MultiDict(parse_query(plan.raw_query)).items()
                          if k.lower() not in creds and k != "gw_session")
        header = {facts.auth_header: facts.auth_value.replace("$key", plan.key), "X-Gateway-Pair-Id": plan.pair_id}
        session = HeadlessSession(ShadowApp(self.shadow.app), plan.unit.provider, plan.unit.route, path=plan.path,
                                  query=query, header=header, port=GradiumSession.port(self.stats))
        session.flow.data["shadow_leg"] = self
        return GradiumSession(session, self.stats)

    async def _feed(self, conn: LegacySocket | GradiumSession) -> None:
        first = True
        lag_metric = self.shadow.metrics.shadow_queue_lag.labels(self.plan.unit.provider)
        while True:
            t, item = await self.queue.get()
            if item is END:
                return
            if first and isinstance(item, str):
                item = strip_message_credentials(self.plan.mapping, item)
            first = False
            try:
                await self._spend(item)
            except BudgetRefused:
                if not self.stats.frames_in:
                    raise  # nothing sent yet: the whole leg is refused
                await self._end_early(conn)
                return
            await conn.send(item)
            self.stats.sent(item)
            lag = time.monotonic() - max(t, self.deferred_until)
            self.lags.append(lag)
            lag_metric.observe(lag)

    async def _end_early(self, conn: LegacySocket | GradiumSession) -> None:
        """A refused top-up ends the leg the way a client would end it (the mapping's `end_of_input`
        frames), so the shadow still answers for what it got: a pair flagged by its outcome."""
        self.outcome = "truncated_budget"  # offer() takes no more frames from the primary
        for frame in self.plan.mapping.legacy.shadow.end_of_input if self.plan.mapping.legacy else ():
            await conn.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())

    async def _spend(self, item: str | bytes) -> None:
        plan = self.plan
        if plan.unit.kind == "tts":
            unit, amount = "tts_chars", text_chars(item)
        else:
            unit, amount = "stt_seconds", (len(item) if isinstance(item, bytes) else len(item) * 0.75) / 32000
        await self._charge(unit, amount)

    async def _charge(self, unit: str, amount: float) -> None:
        if amount > 0:
            if not await self.account.charge(unit, amount):
                raise BudgetRefused
            self.shadow.metrics.shadow_budget.labels(self.plan.tenant, self.plan.side, unit).inc(amount)

    async def _finish(self) -> None:
        plan, shadow = self.plan, self.shadow
        outcome = self.outcome or "shadow_error"
        with contextlib.suppress(Exception):
            await asyncio.shield(self.account.settle(outcome == "vendor_throttled"))
        shadow.legs.discard(self)
        shadow.metrics.shadow_inflight.labels(plan.side).dec()
        shadow.count(plan, plan.side, outcome)
        if outcome in NOT_STARTED:
            log.info("shadow.skipped", pair_id=plan.pair_id, outcome=outcome, shadow_target=plan.side)
            return  # never ran: counted, no pair
        for leg, stats in (("primary", self.primary), ("shadow", self.stats)):
            ms = stats.first_output_ms()
            if ms is not None and outcome == "completed" and plan.pair_kind == "candidate":
                target = plan.primary if leg == "primary" else plan.side
                shadow.metrics.shadow_first_output.labels(plan.unit.provider, plan.unit.route, leg,
                                                          target).observe(ms / 1000)
        lags = sorted(self.lags)
        row = {"pair_id": plan.pair_id, "outcome": outcome, "tenant": plan.tenant, "provider": plan.unit.provider,
               "route": plan.unit.route, "primary": plan.primary, "shadow_target": plan.side,
               "pair_kind": plan.pair_kind,
               "primary_request_id": plan.primary_request_id,
               "lag_p95_ms": round(lags[int(0.95 * (len(lags) - 1))] * 1000, 2) if lags else None,
               "primary_leg": _summary(self.primary), "shadow_leg": _summary(self.stats)}
        log.info("shadow.end", **{k: v for k, v in row.items() if not k.endswith("_leg")},
                 primary_first_output_ms=row["primary_leg"]["first_output_ms"],
                 shadow_first_output_ms=row["shadow_leg"]["first_output_ms"])
        shadow.finished.append(row)
        del shadow.finished[:-256]
        for cb in shadow.on_pair:
            with contextlib.suppress(Exception):
                cb(row, self)


class BudgetRefused(Exception):
    pass


def _route_path(plan: ShadowPlan) -> str:
    """The unit's path with its values encoded again: a decoded `%0D%0A` or `%2F` must not become a line break
    or a path separator in the leg's request (`dial_ws` and `send` send the URL as it is)."""
    return plan.route.path.format(**{k: quote(v, safe="") for k, v in plan.path.items()})


# outcomes of legs refused before they started (cooldown, caps, shared state down, a primary that never
# upgraded): counted, never stored
NOT_STARTED = frozenset({"cooldown", "dropped_concurrency", "state_unavailable", NOT_UPGRADED})


def _summary(s: LegStats) -> dict[str, Any]:
    return {"first_output_ms": s.first_output_ms(), "frames_in": s.frames_in, "frames_out": s.frames_out,
            "bytes_out": s.bytes_out, "audio_bytes": s.audio_bytes, "close_code": s.close_code}
