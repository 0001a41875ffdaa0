"""ElevenLabs SDK against the gateway: REST TTS, the stream-input WebSocket (convert_realtime), then
speech-to-text of what was said. Only the base URL differs from talking to ElevenLabs.

    GATEWAY_URL=https://localhost:8443 SSL_CERT_FILE=certs/client.pem python examples/elevenlabs_example.py
"""

import os

from elevenlabs.client import ElevenLabs

BASE_URL = os.environ.get("GATEWAY_URL", "https://localhost:8443")  # convert_realtime needs https (wss://)
API_KEY = os.environ.get("GRADIUM_API_KEY", "any-key-works-on-the-emulator")
RACHEL = "21m00Tcm4TlvDq8ikWAM"


def main() -> None:
    el = ElevenLabs(api_key=API_KEY, base_url=BASE_URL)
    mp3 = b"".join(el.text_to_speech.convert(RACHEL, text="Hello from the gateway.", model_id="eleven_flash_v2_5"))
    print(f"REST TTS: {len(mp3)} bytes of mp3")
    streamed = b"".join(el.text_to_speech.convert_realtime(
        voice_id=RACHEL, text=iter(["Hello ", "over the ", "web socket."]), model_id="eleven_flash_v2_5"))
    print(f"stream-input WebSocket: {len(streamed)} bytes of mp3")
    result = el.speech_to_text.convert(file=("hello.mp3", mp3, "audio/mpeg"), model_id="scribe_v1")
    print(f"speech-to-text: {result.text}")


if __name__ == "__main__":
    main()
