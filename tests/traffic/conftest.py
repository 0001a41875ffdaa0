"""A managed gateway in front of the stand-in vendor (tests/standin.py): tenant `acme` holds vendor keys."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.traffic.report_cli import DEFAULT_DB
from tests.conftest import Gateway
from tests.standin import StandIn, front_settings, start_front, start_standin

GW_KEY = "gw_acme_live_key"  # what the app sends to the gateway
VENDOR_KEYS = {"elevenlabs": "sk_vendor_el", "deepgram": "dg_vendor_key", "cartesia": "sk_car_vendor"}
SHADOW_KEYS = {"gradium": "gsk_acme_shadow", "elevenlabs": "sk_shadow_el", "deepgram": "dg_shadow_key",
               "cartesia": "sk_car_shadow"}


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def managed_auth(**tenant: Any) -> dict[str, Any]:
    return {"mode": "managed", "keys": [{"sha256": sha(GW_KEY), "tenant": "acme"}],
            "tenants": {"acme": {"gradium_api_key": "gsk_acme", "legacy_keys": dict(VENDOR_KEYS), **tenant}}}


def vendor_auth() -> dict[str, Any]:
    """The stand-in accepts only the vendor keys, like the real vendor would."""
    keys = [*VENDOR_KEYS.values(), *(v for k, v in SHADOW_KEYS.items() if k != "gradium")]
    return {"mode": "managed", "keys": [{"sha256": sha(k), "tenant": "vendor"} for k in keys],
            "tenants": {"vendor": {"gradium_api_key": "gsk_vendor"}}}


@pytest.fixture
async def standin(tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StandIn]:
    async with start_standin(tls_files, monkeypatch, auth=vendor_auth()) as s:
        yield s


Front = Callable[..., AbstractAsyncContextManager[Gateway]]


@pytest.fixture
def front(standin: StandIn, tls_files: dict[str, Path], tmp_path: Path) -> Front:
    """`async with front(traffic=..., auth=...) as gw`: a managed gateway whose vendors are the stand-in; a
    shadow section without a store path stores in the test's own directory."""

    def make(**extra: Any) -> AbstractAsyncContextManager[Gateway]:
        extra.setdefault("auth", managed_auth())
        extra.setdefault("traffic", {"default": {"gradium": 0}})
        if "shadow" in extra:
            store = {"path": str(tmp_path / "shadow.db"), **extra["shadow"].get("store", {})}
            extra["shadow"] = {**extra["shadow"], "store": store}
        return start_front(front_settings(standin, tls_files, **extra), standin)

    return make


@pytest.fixture(autouse=True)
def no_store_in_the_working_directory() -> Iterator[None]:
    """Traffic tests keep their shadow stores under tmp_path: never the default ./gateway-shadow.db."""
    default = Path(DEFAULT_DB)
    before = default.exists()
    yield
    assert before or not default.exists(), f"a test wrote {default.resolve()}"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def vendor(speak: Handler, host: str = "127.0.0.1") -> AsyncIterator[dict[str, dict[str, str]]]:
    """A plain-HTTP vendor serving ElevenLabs' streaming route with `speak`: yields the `legacy` section
    (`host` as the base URL names it: aiohttp's cookie jar keeps cookies only from named hosts)."""
    app = web.Application()
    app.router.add_post("/v1/text-to-speech/{voice}/stream", speak)
    async with serve_vendor(app, host) as legacy:
        yield legacy


@asynccontextmanager
async def serve_vendor(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[dict[str, dict[str, str]]]:
    """`app` on a loopback port as the ElevenLabs vendor: yields the `legacy` section naming it."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield {"elevenlabs": {"base_url": f"http://{host}:{port}"}}
    finally:
        await runner.cleanup()
