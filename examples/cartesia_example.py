"""Cartesia SDK against the gateway: bytes TTS, the TTS WebSocket with a context, then batch
speech-to-text. Only the base URL differs from Cartesia's (SDK 4 always opens wss:// for the socket).

    GATEWAY_URL=https://localhost:8443 SSL_CERT_FILE=certs/client.pem python examples/cartesia_example.py
"""

import asyncio
import io
import os
import wave

from cartesia import AsyncCartesia

BASE_URL = os.environ.get("GATEWAY_URL", "https://localhost:8443")
API_KEY = os.environ.get("GRADIUM_API_KEY", "any-key-works-on-the-emulator")
KATIE = "f786b574-daa5-4673-aa0c-cbe3e8534c02"
RAW16 = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}


async def main() -> None:
    ca = AsyncCartesia(api_key=API_KEY, base_url=BASE_URL)
    resp = await ca.tts.generate(model_id="sonic-3", transcript="Hello from the gateway.", voice=KATIE,
                                 output_format=RAW16)
    pcm = await resp.read()
    print(f"bytes TTS: {len(pcm)} bytes of 16 kHz PCM")
    async with ca.tts.websocket_connect() as conn:
        ctx = conn.context(model_id="sonic-3", voice=KATIE, output_format=RAW16)
        await ctx.push("Hello over the web socket.")
        await ctx.no_more_inputs()
        streamed = b"".join([ev.audio async for ev in ctx.receive() if ev.type == "chunk" and ev.audio])
    print(f"TTS WebSocket: {len(streamed)} bytes")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    r = await ca.stt.transcribe(file=("hello.wav", io.BytesIO(buf.getvalue()), "audio/wav"), model="ink-whisper")
    print(f"speech-to-text: {r.text}")


if __name__ == "__main__":
    asyncio.run(main())
