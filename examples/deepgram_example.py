"""Deepgram SDK against the gateway: Aura TTS over REST, then pre-recorded speech-to-text of it and the
same audio through the live WebSocket. Only the environment's base URLs differ from Deepgram's.

    GATEWAY_URL=https://localhost:8443 SSL_CERT_FILE=certs/client.pem python examples/deepgram_example.py
"""

import asyncio
import os

from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment
from deepgram.core.events import EventType

BASE_URL = os.environ.get("GATEWAY_URL", "https://localhost:8443")
API_KEY = os.environ.get("GRADIUM_API_KEY", "any-key-works-on-the-emulator")
WS_URL = "wss://" + BASE_URL.split("://", 1)[1] if BASE_URL.startswith("https") else "ws://" + BASE_URL.split("://")[1]


async def main() -> None:
    env = DeepgramClientEnvironment(base=BASE_URL, production=WS_URL, agent=WS_URL, agent_rest=BASE_URL)
    dg = AsyncDeepgramClient(api_key=API_KEY, environment=env)
    pcm = b"".join([c async for c in dg.speak.v1.audio.generate(
        text="Hello from the gateway.", model="aura-2-thalia-en", encoding="linear16", sample_rate=16000,
        container="none")])
    print(f"TTS: {len(pcm)} bytes of 16 kHz PCM")
    wav = b"".join([c async for c in dg.speak.v1.audio.generate(
        text="Hello from the gateway.", model="aura-2-thalia-en", encoding="linear16", sample_rate=16000)])
    r = await dg.listen.v1.media.transcribe_file(request=wav, model="nova-3")
    print(f"pre-recorded: {r.results.channels[0].alternatives[0].transcript}")

    finals: list[str] = []
    async with dg.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate="16000") as conn:
        def on_message(msg: object) -> None:
            if getattr(msg, "type", None) == "Results" and msg.is_final:  # type: ignore[attr-defined]
                finals.append(msg.channel.alternatives[0].transcript)  # type: ignore[attr-defined]

        conn.on(EventType.MESSAGE, on_message)
        listening = asyncio.create_task(conn.start_listening())
        for i in range(0, len(pcm), 3200):
            await conn.send_media(pcm[i:i + 3200])
        await conn.send_close_stream()
        await asyncio.wait_for(listening, 30)
    print(f"live: {' '.join(t for t in finals if t)}")


if __name__ == "__main__":
    asyncio.run(main())
