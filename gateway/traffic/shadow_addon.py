"""The shadow as a session addon: attaches the planned leg to its primary and feeds it (registered only when
shadowing is on). Every hook is cheap and never waits: frames are offered to the leg's bounded queue."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.events import NOT_UPGRADED, ClientFrame, SessionEnd, SessionStart
from gateway.traffic.shadow import PLAN, Shadow
from gateway.traffic.shadow_leg import ShadowLeg


class ShadowAddon:
    """Attaches the planned leg to its primary session and feeds it; registered only when shadowing is on."""

    def __init__(self, shadow: Shadow) -> None:
        self.shadow = shadow

    def session_start(self, ev: SessionStart) -> None:
        flow = ev.flow
        if flow.headless:
            return
        plan = PLAN.get()
        if plan is None or plan.unit.route != flow.route or plan.unit.provider != flow.provider:
            return
        PLAN.set(None)
        plan.primary_request_id = flow.request_id
        leg = ShadowLeg(self.shadow, plan)
        self.shadow.legs.add(leg)
        flow.data["shadow_pair"] = leg
        if (noise := plan.noise) is not None:  # a same-side copy: shares the primary's stats, own queue
            noise.primary_request_id, noise.body = flow.request_id, plan.body
            copy = ShadowLeg(self.shadow, noise, candidate=leg)
            self.shadow.legs.add(copy)
            flow.data["shadow_noise"] = copy

    def watches(self, flow: Any) -> bool:
        """Frames and outputs matter only to a sampled unit's primary (asked after `session_start`)."""
        return "shadow_pair" in flow.data

    def client_frame(self, ev: ClientFrame) -> None:
        leg = ev.flow.data.get("shadow_pair")
        if leg is not None and leg.plan.body is None:  # an HTTP leg was given the whole body up front
            leg.offer(ev.data, ev.t)
            if (copy := ev.flow.data.get("shadow_noise")) is not None:
                copy.offer(ev.data, ev.t)
            primary = leg.primary
            if primary.sent_first is None:
                primary.sent_first = ev.t
            primary.frames_in += 1
            primary.record_in(ev.t, ev.data)

    def client_output(self, ev: Any) -> None:
        leg = ev.flow.data.get("shadow_pair")
        if leg is not None:
            if leg.primary.first_output is None:  # a TTS leg starts (ShadowLeg.start) once this output is out
                call_soon = asyncio.get_running_loop().call_soon
                call_soon(leg.start)
                if (copy := ev.flow.data.get("shadow_noise")) is not None:
                    call_soon(copy.start)
            leg.primary.out(ev.data, ev.t)

    def session_end(self, ev: SessionEnd) -> None:
        legs = [leg for name in ("shadow_pair", "shadow_noise") if (leg := ev.flow.data.pop(name, None)) is not None]
        # a socket unit answered over HTTP never upgraded: a plain GET, or a handshake its primary refused
        # before the 101 (`refuse_upgrade`: bad credentials or parameters, Gradium's verdict). Nothing to
        # compare: the leg is counted `not_upgraded` and its dial, if under way, cancelled, not sent on to
        # fail again as a `shadow_error` (a vendor's refused handshake begins no session: `router.wrap`)
        refused = ev.flow.transport == "ws" and ev.http_status is not None
        for leg in legs:
            if refused:
                leg.drop(NOT_UPGRADED)
                continue
            leg.primary.close_code = ev.close_code
            leg.end_input()
