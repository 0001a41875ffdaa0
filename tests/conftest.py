"""Fixtures: a real Gradium emulator and a real gateway on loopback, ephemeral ports, TLS from a throwaway CA."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
import trustme
from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings
from gateway.custom_ids import CALLER
from gateway.emulator.app import create_emulator_app
from gateway.observability import configure_logging


@pytest.fixture(autouse=True)
def _no_caller_between_tests() -> object:
    """A session core driven synchronously (the playbooks) authenticates in the test's own context, where the
    caller would outlive the test; in the gateway every request runs in its own task, so it never does."""
    token = CALLER.set(None)
    yield
    CALLER.reset(token)


def _port(site: web.TCPSite) -> int:
    return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@dataclass
class Emulator:
    app: web.Application
    url: str  # REST base, e.g. http://127.0.0.1:P/api


@dataclass
class Gateway:
    app: web.Application
    http: str  # http://127.0.0.1:P
    https: str  # https://127.0.0.1:Q (same routes, TLS)
    emulator: Emulator

    @property
    def ws(self) -> str:
        return "ws" + self.http[4:]

    @property
    def wss(self) -> str:
        return "wss" + self.https[5:]


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_files(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert = tls_ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem"}
    tls_ca.cert_pem.write_to_path(str(files["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(files["cert"]), append=True)
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


@pytest.fixture
def client_ssl(tls_files: dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files["ca"]))


@contextlib.asynccontextmanager
async def run_app(app: web.Application, ssl_ctx: ssl.SSLContext | None = None) -> AsyncIterator[tuple[int, int]]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    plain = web.TCPSite(runner, "127.0.0.1", 0)
    await plain.start()
    tls_port = 0
    if ssl_ctx is not None:
        secure = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_ctx)
        await secure.start()
        tls_port = _port(secure)
    try:
        yield _port(plain), tls_port
    finally:
        await runner.cleanup()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    app = create_emulator_app()
    async with run_app(app) as (port, _):
        yield Emulator(app, f"http://127.0.0.1:{port}/api")


def gateway_settings(emulator: Emulator, tls_files: dict[str, Path], **extra: object) -> Settings:
    data: dict[str, object] = {
        "tls_cert": tls_files["cert"],
        "tls_key": tls_files["key"],
        "gradium": {"base_url": emulator.url},
        **extra,
    }
    return Settings.model_validate(data)


@contextlib.asynccontextmanager
async def start_gateway(settings: Settings, emulator: Emulator) -> AsyncIterator[Gateway]:
    app = create_app(settings)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    async with run_app(app, server_ssl) as (port, tls_port):
        yield Gateway(app, f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls_port}", emulator)


@pytest.fixture
async def gateway(emulator: Emulator, tls_files: dict[str, Path]) -> AsyncIterator[Gateway]:
    async with start_gateway(gateway_settings(emulator, tls_files), emulator) as gw:
        yield gw


async def assert_upstream_released(gw: Gateway) -> None:
    """Every Gradium socket the gateway opened is closed, or idle in its pool (bounded wait)."""
    from gateway.dialects.common import GRADIUM
    from gateway.emulator.stats import STATS

    stats = gw.emulator.app[STATS]
    for _ in range(250):
        if stats.ws_active == gw.app[GRADIUM].idle_count():
            return
        await asyncio.sleep(0.02)
    assert stats.ws_active == gw.app[GRADIUM].idle_count(), "an upstream socket outlived its client"


@pytest.fixture
def trust_test_ca(tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make clients that build their own default SSL context (websockets, httpx) trust the test CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files["ca"]))
    return tls_files["ca"]


@contextlib.contextmanager
def json_log_sink(level: str) -> Iterator[io.StringIO]:
    """The production log pipeline (JSON, redacted) into a buffer, as `serve` configures it; undone after."""
    sink = io.StringIO()
    configure_logging(level, sink)
    try:
        yield sink
    finally:
        structlog.reset_defaults()
        root = logging.getLogger()
        for h in [h for h in root.handlers if getattr(h, "_gateway_json", False)]:
            root.removeHandler(h)
