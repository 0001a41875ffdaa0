"""`deepgram-sdk` 4.x (still widely pinned) against the gateway: prerecorded and `POST /v1/speak`.

4.x and 7.x are both the `deepgram` package, so 4.x cannot live in the test environment: it is
installed once with `pip install --target` into a cache directory and driven in a subprocess with
that directory first on its path. Without a package index the tests skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.audiocheck import decode, expected_words, wav_bytes, words
from tests.conftest import Gateway

SDK4 = "deepgram-sdk==4.8.1"
TARGET = Path(os.environ.get("DEEPGRAM_SDK4_DIR", Path(tempfile.gettempdir()) / "gradium-gateway-deepgram-sdk-4.8.1"))

SCRIPT = r"""
import json, sys
from deepgram import DeepgramClient, DeepgramClientOptions, PrerecordedOptions, SpeakOptions
import deepgram
base, audio_path, out_path = sys.argv[1:4]
client = DeepgramClient("gsk_test", DeepgramClientOptions(url=base))
with open(audio_path, "rb") as f:
    audio = f.read()
r = client.listen.rest.v("1").transcribe_file(
    {"buffer": audio}, PrerecordedOptions(model="nova-3", smart_format=True, utterances=True, diarize=True))
s = client.speak.rest.v("1").stream_memory({"text": "Old SDK speaking."}, SpeakOptions(model="aura-asteria-en"))
raw = client.speak.rest.v("1").stream_memory(
    {"text": "Raw audio."}, SpeakOptions(model="aura-2-thalia-en", encoding="linear16", container="none",
                                         sample_rate=16000))
with open(out_path, "wb") as f:
    f.write(s.stream_memory.getvalue())
with open(out_path + ".raw", "wb") as f:
    f.write(raw.stream_memory.getvalue())
try:
    client.speak.rest.v("1").stream_memory({"text": "x"}, SpeakOptions(model="aura-nobody-en"))
    err = None
except Exception as exc:  # DeepgramApiError
    err = {"type": type(exc).__name__, "message": str(exc), "status": getattr(exc, "status", None)}
print(json.dumps({
    "version": deepgram.__version__,
    "transcript": r.results.channels[0].alternatives[0].transcript,
    "words": [w.punctuated_word for w in r.results.channels[0].alternatives[0].words],
    "utterances": [u.transcript for u in r.results.utterances],
    "request_id": r.metadata.request_id,
    "model_info": bool(r.metadata.model_info),
    "speak": {"content_type": s.content_type, "request_id": s.request_id, "model_name": s.model_name,
              "model_uuid": s.model_uuid, "characters": s.characters, "transfer_encoding": s.transfer_encoding,
              "date": s.date},
    "error": err,
}))
"""


@pytest.fixture(scope="session")
def sdk4_dir() -> Path:
    if not (TARGET / "deepgram" / "__init__.py").is_file():
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "--target", str(TARGET), SDK4], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            pytest.skip(f"cannot install {SDK4}: {r.stderr.strip()[-300:]}")
    return TARGET


async def test_sdk4_prerecorded_and_speak(gateway: Gateway, sdk4_dir: Path, tmp_path: Path) -> None:
    audio = tmp_path / "in.wav"
    audio.write_bytes(wav_bytes("Hello there. How are you today?", 16000))
    out = tmp_path / "out.mp3"
    env = {**os.environ, "PYTHONPATH": str(sdk4_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, gateway.http, str(audio), str(out), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    got = json.loads(stdout.decode().strip().splitlines()[-1])
    assert got["version"].lstrip("v").startswith("4.")
    assert got["transcript"] == "Hello there. How are you today?"
    assert got["words"] == ["Hello", "there.", "How", "are", "you", "today?"]
    assert got["request_id"] and got["model_info"] and got["utterances"]
    sp = got["speak"]  # SDK4 indexes each of these headers and fails without them
    assert sp["content_type"] == "audio/mpeg" and sp["request_id"] and sp["model_name"] == "aura-asteria-en"
    assert sp["model_uuid"] and sp["characters"] == len("Old SDK speaking.") and sp["transfer_encoding"] == "chunked"
    assert sp["date"]
    mp3 = decode(out.read_bytes())
    assert words(mp3.pcm, mp3.sample_rate) == expected_words("Old SDK speaking.")
    raw = decode(Path(str(out) + ".raw").read_bytes(), "s16le", 16000)
    assert words(raw.pcm, 16000) == expected_words("Raw audio.")
    assert got["error"] and got["error"]["status"] in (400, "400") and got["error"]["message"]
