"""Application factory and runner for the Gradium emulator."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from gateway.emulator.faults import FAULTS, Faults, add_control_routes
from gateway.emulator.rest import add_rest_routes
from gateway.emulator.settings import EmulatorSettings
from gateway.emulator.state import STATE, EmulatorState
from gateway.emulator.stats import STATS, Stats
from gateway.emulator.stt_replay import REPLAY, ReplayCache
from gateway.emulator.voice_api import add_voice_routes
from gateway.emulator.ws import asr_ws, tts_ws

log = logging.getLogger(__name__)


def create_emulator_app(settings: EmulatorSettings | None = None) -> web.Application:
    settings = settings or EmulatorSettings()
    app = web.Application(client_max_size=settings.max_message_bytes)
    app[STATE] = EmulatorState.create(settings)
    app[FAULTS] = Faults()
    app[STATS] = Stats(history=settings.setup_history)
    if settings.stt_replay:
        app[REPLAY] = ReplayCache(settings.stt_replay_max_nodes)
    app.router.add_get("/api/speech/tts", tts_ws)
    app.router.add_get("/api/speech/asr", asr_ws)
    add_rest_routes(app)
    add_voice_routes(app)
    add_control_routes(app)
    return app


async def run_emulator(host: str, port: int, settings: EmulatorSettings | None = None) -> None:
    """Serve until cancelled."""
    runner = web.AppRunner(create_emulator_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.warning("Gradium emulator listening on http://%s:%d/api/ (tone TTS/STT, not real speech)", host, port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
