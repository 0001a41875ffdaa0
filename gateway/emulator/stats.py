"""Counters and recent setups, served at `GET /_emulator/stats` so tests can see what arrived."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Stats:
    history: int = 20
    ws_connections: int = 0
    ws_active: int = 0
    rest_requests: int = 0
    sessions: dict[str, int] = field(default_factory=dict)
    messages_in: int = 0
    messages_out: int = 0
    errors_sent: int = 0
    auth_failures: int = 0
    tokens_minted: int = 0
    faults_applied: int = 0
    setups: deque[dict[str, Any]] = field(default_factory=deque)

    def record_setup(self, route: str, setup: dict[str, Any], *, key_id: str | None, source: str | None) -> None:
        self.sessions[route] = self.sessions.get(route, 0) + 1
        self.setups.append(
            {"route": route, "setup": setup, "key_id": key_id, "x_api_source": source, "time": time.time()}
        )
        while len(self.setups) > self.history:
            self.setups.popleft()

    def reset(self) -> None:
        fresh = Stats(history=self.history)
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def to_json(self) -> dict[str, Any]:
        return {
            "ws_connections": self.ws_connections,
            "ws_active": self.ws_active,
            "rest_requests": self.rest_requests,
            "sessions": dict(self.sessions),
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "errors_sent": self.errors_sent,
            "auth_failures": self.auth_failures,
            "tokens_minted": self.tokens_minted,
            "faults_applied": self.faults_applied,
            "setups": list(self.setups),
        }


STATS = web.AppKey("emulator_stats", Stats)
