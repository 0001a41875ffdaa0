"""The fuzz smoke run through the traffic layer: every request passed through to the stand-in vendor, and
every request on Gradium with a shadow leg to the vendor at rate 1. Same verdicts as the translated run
(`test_fuzz_smoke.py`), and nothing left behind: no shadow leg, no vendor socket, no error log line."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.traffic.router import TRAFFIC
from tests.fuzz.cases import SECRET
from tests.fuzz.runner import LEAK_MARK, fuzz
from tests.standin import front_settings, start_front, start_standin
from tests.traffic.conftest import SHADOW_KEYS, VENDOR_KEYS, sha


def _auth() -> dict[str, Any]:
    """The fuzz cases' key is a managed gateway key of a tenant with vendor and shadow keys."""
    return {"mode": "managed", "keys": [{"sha256": sha(SECRET), "tenant": "acme"}],
            "tenants": {"acme": {"gradium_api_key": "gsk_acme", "legacy_keys": dict(VENDOR_KEYS),
                                 "shadow_keys": dict(SHADOW_KEYS)}}}


@pytest.mark.parametrize("setup", ["passthrough", "shadow"])
async def test_fuzz_through_the_traffic_layer(setup: str, tls_files: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, json_logs: io.StringIO) -> None:
    extra: dict[str, Any] = {"auth": _auth(), "traffic": {"default": {"gradium": 0 if setup == "passthrough" else 100}}}
    if setup == "shadow":
        extra["shadow"] = {"enabled": True, "store": {"path": str(tmp_path / "shadow.db")},
                           "rules": [{"match": {"tenant": "acme"}, "rate": 1}]}
    async with start_standin(tls_files, monkeypatch) as standin, \
            start_front(front_settings(standin, tls_files, **extra), standin) as gw:
        found = await fuzz(gw, seed=8, http_per_dialect=60, ws_per_dialect=12, concurrency=12, deadline=20)
        assert found.defects == [], "\n".join(found.defects[:20])
        assert found.sockets_left_open == 0, found.summary()  # the stand-in's Gradium sockets
        shadow = gw.front[TRAFFIC].shadow  # type: ignore[attr-defined]
        if shadow is not None:
            for _ in range(500):  # legs drain (`drain_timeout_s`) once their primaries ended
                if not shadow.legs:
                    break
                await asyncio.sleep(0.02)
            assert not shadow.legs, [(leg.plan.unit.route, leg.outcome) for leg in shadow.legs]
    logs = [orjson.loads(line) for line in json_logs.getvalue().splitlines() if line.startswith("{")]
    assert not [ln for ln in logs if ln.get("level") == "error"], [ln for ln in logs if ln.get("level") == "error"][:3]
    assert LEAK_MARK.decode() not in json_logs.getvalue()
