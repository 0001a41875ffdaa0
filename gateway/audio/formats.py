"""Audio format descriptions shared by every dialect, the upstream and the emulator.

One `AudioFormat` describes bytes on a wire: codec (`encoding`), wrapper (`container`), rate,
channels and, for lossy codecs, bit rate. Dialect mappings translate their own format names into
this (through value tables in `mappings/*.yaml`); the audio layer only ever sees `AudioFormat`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Codecs (`encoding`) we know how to produce or consume.
PCM_S16LE = "pcm_s16le"
PCM_F32LE = "pcm_f32le"
MULAW = "pcm_mulaw"
ALAW = "pcm_alaw"
MP3 = "mp3"
OPUS = "opus"
FLAC = "flac"
AAC = "aac"
ENCODINGS = frozenset({PCM_S16LE, PCM_F32LE, MULAW, ALAW, MP3, OPUS, FLAC, AAC})
RAW_PCM_ENCODINGS = frozenset({PCM_S16LE, PCM_F32LE, MULAW, ALAW})
# Codecs clients may send us but that we never produce (Ogg/WebM Vorbis from browsers and old
# recorders). An `AudioFormat` may describe them; `make_transcoder` refuses them as a target.
VORBIS = "vorbis"
INPUT_ONLY_ENCODINGS = frozenset({VORBIS})

# Containers: "raw" means headerless samples for PCM codecs and the codec's own elementary
# stream for compressed ones (mp3 frames, ADTS for aac, native flac).
RAW = "raw"
WAV = "wav"
OGG = "ogg"
WEBM = "webm"
MP4 = "mp4"
CONTAINERS = frozenset({RAW, WAV, OGG, WEBM, MP4})

_MIME = {
    (MP3, RAW): "audio/mpeg",
    (OPUS, OGG): "audio/ogg",
    (OPUS, WEBM): "audio/webm",
    (VORBIS, OGG): "audio/ogg",
    (VORBIS, WEBM): "audio/webm",
    (FLAC, OGG): "audio/ogg",
    (FLAC, RAW): "audio/flac",
    (AAC, RAW): "audio/aac",
    (AAC, MP4): "audio/mp4",
    (MULAW, RAW): "audio/basic",
    (ALAW, RAW): "audio/x-alaw-basic",
    (PCM_S16LE, RAW): "audio/pcm",
    (PCM_F32LE, RAW): "audio/pcm",
}


@dataclass(frozen=True, slots=True)
class AudioFormat:
    encoding: str
    container: str = RAW
    sample_rate: int = 24000
    channels: int = 1
    bit_rate: int | None = None

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS and self.encoding not in INPUT_ONLY_ENCODINGS:
            raise ValueError(f"unknown audio encoding {self.encoding!r}")
        if self.container not in CONTAINERS:
            raise ValueError(f"unknown audio container {self.container!r}")
        if not 1000 <= self.sample_rate <= 192000:
            raise ValueError(f"unsupported sample rate {self.sample_rate}")
        if not 1 <= self.channels <= 8:
            raise ValueError(f"unsupported channel count {self.channels}")

    @property
    def is_raw_pcm(self) -> bool:
        """Headerless samples: bytes can be split anywhere on a sample boundary."""
        return self.container == RAW and self.encoding in RAW_PCM_ENCODINGS

    @property
    def bytes_per_sample(self) -> int:
        """Bytes per sample per channel for PCM codecs (0 for compressed ones)."""
        return {PCM_S16LE: 2, PCM_F32LE: 4, MULAW: 1, ALAW: 1}.get(self.encoding, 0)

    @property
    def mime(self) -> str:
        if self.container == WAV:
            return "audio/wav"
        return _MIME.get((self.encoding, self.container), "application/octet-stream")

    def with_rate(self, sample_rate: int) -> AudioFormat:
        return replace(self, sample_rate=sample_rate)

    def same_bytes_as(self, other: AudioFormat) -> bool:
        """True when bytes in `other` can be forwarded untouched as `self`.

        Bit rate is ignored for lossless and PCM codecs, and when either side leaves it open.
        """
        if (self.encoding, self.container, self.sample_rate, self.channels) != (
            other.encoding,
            other.container,
            other.sample_rate,
            other.channels,
        ):
            return False
        return self.bit_rate is None or other.bit_rate is None or self.bit_rate == other.bit_rate


def is_compressed(fmt: AudioFormat | None) -> bool:
    """Formats whose codec work costs enough (~0.1-1 ms per 80 ms chunk) to run off the event loop.

    None (an unknown container, sniffed from the bytes) counts as compressed.
    """
    return fmt is None or fmt.encoding not in RAW_PCM_ENCODINGS


def pcm16(rate: int, channels: int = 1) -> AudioFormat:
    return AudioFormat(PCM_S16LE, RAW, rate, channels)


# What Gradium produces for each TTS `output_format` (specs/gradium.md §3.5).
GRADIUM_OUTPUT_FORMATS: dict[str, AudioFormat] = {
    "pcm": pcm16(48000),
    "wav": AudioFormat(PCM_S16LE, WAV, 48000),
    "opus": AudioFormat(OPUS, OGG, 48000),
    "ulaw_8000": AudioFormat(MULAW, RAW, 8000),
    "mulaw_8000": AudioFormat(MULAW, RAW, 8000),
    "alaw_8000": AudioFormat(ALAW, RAW, 8000),
    **{f"pcm_{r}": pcm16(r) for r in (8000, 16000, 22050, 24000, 44100, 48000)},
}

# What Gradium accepts for each STT `input_format` (specs/gradium.md §5.2). `pcm` is 24 kHz here.
GRADIUM_INPUT_FORMATS: dict[str, AudioFormat] = {
    "pcm": pcm16(24000),
    "wav": AudioFormat(PCM_S16LE, WAV, 24000),
    "opus": AudioFormat(OPUS, OGG, 48000),
    "ulaw_8000": AudioFormat(MULAW, RAW, 8000),
    "mulaw_8000": AudioFormat(MULAW, RAW, 8000),
    "alaw_8000": AudioFormat(ALAW, RAW, 8000),
    **{f"pcm_{r}": pcm16(r) for r in (8000, 16000, 22050, 24000, 44100, 48000)},
}

_PCM_RATES = (8000, 16000, 22050, 24000, 44100, 48000)


def _nearest_rate(rate: int) -> int:
    """The smallest Gradium PCM rate at or above `rate` (never upsample less than asked)."""
    for r in _PCM_RATES:
        if r >= rate:
            return r
    return _PCM_RATES[-1]


def nearest_gradium_output(want: AudioFormat) -> str:
    """The Gradium TTS `output_format` that needs the least work to become `want`.

    Exact matches (G.711 at 8 kHz, s16 PCM at a Gradium rate, Ogg Opus) pass through untouched;
    everything else is asked as s16 PCM at the nearest rate and transcoded in the stream.
    """
    if want.channels == 1:
        if want.encoding == MULAW and want.container == RAW and want.sample_rate == 8000:
            return "ulaw_8000"
        if want.encoding == ALAW and want.container == RAW and want.sample_rate == 8000:
            return "alaw_8000"
        if want.encoding == OPUS and want.container == OGG and want.sample_rate == 48000 and not want.bit_rate:
            return "opus"
    return f"pcm_{_nearest_rate(want.sample_rate)}"


def nearest_gradium_input(have: AudioFormat) -> str:
    """The Gradium STT `input_format` that `have` can be sent as with the least work.

    Raw mono s16 at a Gradium rate and 8 kHz G.711 pass through; everything else is decoded
    and resampled to 24 kHz s16 (`pcm`), Gradium's native STT rate.
    """
    if have.channels == 1 and have.container == RAW:
        if have.encoding == PCM_S16LE and have.sample_rate in _PCM_RATES:
            return f"pcm_{have.sample_rate}"
        if have.encoding == MULAW and have.sample_rate == 8000:
            return "ulaw_8000"
        if have.encoding == ALAW and have.sample_rate == 8000:
            return "alaw_8000"
    return "pcm"
