"""`gradium.message_timeout_s` on streamed HTTP answers: a Gradium that stalls mid-stream ends the download
(broken, never a short "success"); one that is only slow, within the limit per message, is served whole."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from gateway.emulator.faults import FAULTS
from tests.conftest import Emulator, gateway_settings, start_gateway

VOICE = "21m00Tcm4TlvDq8ikWAM"


async def download(http: str) -> tuple[int, bytes | None]:
    url = f"{http}/v1/text-to-speech/{VOICE}/stream?output_format=pcm_16000"
    async with aiohttp.ClientSession() as s, s.post(url, json={"text": "Slow and steady."},
                                                    headers={"xi-api-key": "gsk_test"}) as r:
        try:
            return r.status, await r.read()
        except aiohttp.ClientPayloadError:
            return r.status, None


@pytest.mark.parametrize(("frame_delay_s", "whole"), [(0.6, False), (0.05, True)])
async def test_each_wait_on_gradium_is_bounded(emulator: Emulator, tls_files: dict[str, Path],
                                               frame_delay_s: float, whole: bool) -> None:
    settings = gateway_settings(emulator, tls_files, gradium={"base_url": emulator.url, "message_timeout_s": 0.3})
    async with start_gateway(settings, emulator) as gw:
        emulator.app[FAULTS].update({"frame_delay_s": frame_delay_s})
        status, body = await download(gw.http)
        assert status == 200
        assert (body is not None and len(body) > 0) is whole
