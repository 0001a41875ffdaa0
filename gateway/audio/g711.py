"""G.711 (mu-law, A-law) at numpy speed, with FFmpeg as the only source of truth.

G.711 is a fixed per-sample mapping, so instead of calling PyAV's `pcm_mulaw`/`pcm_alaw` codecs for
every 10 ms chunk (a frame allocation and two C calls each time) we run each codec once over its
whole domain (all 256 codes to decode, all 65536 s16 values to encode) and keep the results as
lookup tables. Output is bit-identical to FFmpeg's codecs (the tests check this) and a chunk costs
one numpy `take`. Nothing here is a hand-written table.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from typing import cast

import numpy as np

from .formats import ALAW, MULAW
from .libav import av

G711_ENCODINGS = (MULAW, ALAW)


def _check(encoding: str) -> None:
    if encoding not in G711_ENCODINGS:
        raise ValueError(f"not a G.711 encoding: {encoding!r}")


@cache
def decode_table(encoding: str) -> np.ndarray:
    """int16[256]: code byte -> linear sample, as FFmpeg's decoder maps it."""
    _check(encoding)
    ctx = cast(av.AudioCodecContext, av.CodecContext.create(encoding, "r"))
    ctx.sample_rate = 8000
    ctx.layout = "mono"
    frames = ctx.decode(av.Packet(bytes(range(256))))
    frames += ctx.decode(None)
    table = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)
    if table.shape != (256,):
        raise RuntimeError(f"{encoding} decoder returned {table.shape[0]} samples for 256 codes")
    table.flags.writeable = False
    return table


@cache
def encode_table(encoding: str) -> np.ndarray:
    """uint8[65536] indexed by the s16 sample's bit pattern (as uint16): sample -> code byte."""
    _check(encoding)
    ctx = cast(av.AudioCodecContext, av.CodecContext.create(encoding, "w"))
    ctx.sample_rate = 8000
    ctx.layout = "mono"
    ctx.format = "s16"
    ctx.time_base = Fraction(1, 8000)
    domain = np.arange(65536, dtype=np.uint16).view(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(domain, format="s16", layout="mono")
    frame.sample_rate = 8000
    frame.pts = 0
    packets = ctx.encode(frame) + ctx.encode(None)
    table = np.frombuffer(b"".join(bytes(p) for p in packets), dtype=np.uint8).copy()
    if table.shape != (65536,):
        raise RuntimeError(f"{encoding} encoder returned {table.shape[0]} bytes for 65536 samples")
    table.flags.writeable = False
    return table


def decode(encoding: str, codes: np.ndarray) -> np.ndarray:
    """uint8 codes (any shape) -> int16 samples of the same shape."""
    return decode_table(encoding).take(codes)


def encode(encoding: str, samples: np.ndarray) -> np.ndarray:
    """int16 samples (any shape) -> uint8 codes of the same shape."""
    return encode_table(encoding).take(samples.view(np.uint16))
