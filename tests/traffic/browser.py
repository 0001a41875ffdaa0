"""Headless Chromium driven over the DevTools protocol (aiohttp WebSocket): load a page with headers,
read the rendered DOM, take a screenshot. Installs Debian's `chromium` when it is missing (as root);
under CI=true a browser that cannot be had fails the test instead of skipping it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
                       shell=True, check=False, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required for the page test and could not be installed (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session_id: str) -> None:
        self._ws, self._session, self._ids = ws, session_id, itertools.count(1000)
        self._events: list[dict[str, Any]] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        await self._ws.send_json({"id": msg_id, "method": method, "params": params, "sessionId": self._session})
        async with asyncio.timeout(30):
            while True:
                msg = await self._ws.receive_json()
                if msg.get("id") == msg_id:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})
                self._events.append(msg)

    async def wait_event(self, method: str) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while True:
                for i, e in enumerate(self._events):
                    if e.get("method") == method and e.get("sessionId") == self._session:
                        return self._events.pop(i)
                self._events.append(await self._ws.receive_json())

    async def goto(self, url: str, headers: dict[str, str] | None = None) -> None:
        await self.send("Page.enable")
        await self.send("Network.enable")
        if headers:
            await self.send("Network.setExtraHTTPHeaders", headers=headers)
        await self.send("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        res = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return res["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        res = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(res["data"]))


@contextlib.asynccontextmanager
async def chromium(width: int = 1400, height: int = 1000) -> AsyncIterator[Any]:
    exe = chromium_path()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            assert proc.stderr is not None
            async with asyncio.timeout(60):
                while True:
                    line = (await proc.stderr.readline()).decode(errors="replace")
                    if not line:
                        raise RuntimeError("chromium exited before opening DevTools")
                    if m := re.search(r"DevTools listening on (ws://\S+)", line):
                        break
            drain = asyncio.create_task(_drain(proc.stderr))
            async with aiohttp.ClientSession() as http, http.ws_connect(m.group(1), max_msg_size=0) as ws:
                ids = itertools.count(1)

                async def browser_call(method: str, **params: Any) -> dict[str, Any]:
                    msg_id = next(ids)
                    await ws.send_json({"id": msg_id, "method": method, "params": params})
                    async with asyncio.timeout(30):
                        while True:
                            msg = await ws.receive_json()
                            if msg.get("id") == msg_id:
                                return msg["result"]

                async def new_page() -> Page:
                    target = await browser_call("Target.createTarget", url="about:blank")
                    att = await browser_call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
                    page = Page(ws, att["sessionId"])
                    await page.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                                    deviceScaleFactor=1, mobile=False)
                    return page

                yield new_page
            drain.cancel()
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
