"""Knobs of the emulator. Defaults behave like a permissive Gradium account, fast as possible."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.emulator.voices import CUSTOM_VOICES, Voice


@dataclass(slots=True)
class EmulatorSettings:
    # None: any non-empty key is valid except those starting with `revoked_prefix`, so tests can
    # exercise auth failures without configuring anything. A set restricts to exactly those keys.
    api_keys: frozenset[str] | None = None
    revoked_prefix: str = "revoked"
    token_ttl_s: float = 300.0
    # Wall seconds per second of TTS audio (the usual real-time factor): 0 streams as fast as the
    # event loop allows, 1.0 paces like a live voice, 0.5 at twice real time.
    tts_realtime_factor: float = 0.0
    # Before each request's first TTS audio (per request, not per socket: a request on a pooled,
    # already-open socket waits too), like a real model's time to first audio.
    tts_first_audio_delay_s: float = 0.0
    # STT: replay the answer computed for audio already decoded (same input format, same chunks from the
    # start of the request, flushes anywhere among them) instead of decoding it again; benchmarks use it
    # so the emulator's tone decoder does not hide the gateway. Replies are identical to decoding; see
    # `stt_replay.py`. Its counters (hits, misses, decodes) are in `GET /_emulator/stats`.
    stt_replay: bool = False
    stt_replay_max_nodes: int = 50_000  # entries the cache keeps (one chunk's labels or answer each)
    # STT `delay_in_frames` when json_config does not set one (specs/gradium.md §5.2: 10).
    default_delay_in_frames: int = 10
    # REST STT output: Gradium's docs disagree on whether `step` lines are in it (§10.12).
    rest_asr_steps: bool = False
    max_message_bytes: int = 16 * 1024 * 1024
    heartbeat_s: float | None = None
    # Pre-made org voices (listed without include_catalog); tests may add or clear them.
    custom_voices: tuple[Voice, ...] = field(default_factory=lambda: CUSTOM_VOICES)
    # Voice-generator drafts are computed asynchronously by Gradium: `ready` turns true this long after
    # generation (0: at once); an unready draft cannot speak or become a voice.
    draft_ready_after_s: float = 0.0
    # Custom voices an org may hold; one more is a 409 (`Voice limit reached`).
    voice_limit: int = 30
    allocated_credits: int = 1_000_000
    plan_name: str = "Emulator"
    residency: str = "none"
    model_ext: str = "gradium-emulator-tones"
    # How many recent setups `GET /_emulator/stats` keeps.
    setup_history: int = 20
