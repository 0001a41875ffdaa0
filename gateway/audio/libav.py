"""PyAV as the gateway uses it: FFmpeg without threads of its own. Import `av` from here.

The gateway runs codec work on its codec threads (one stream per call, one event loop per core), so
FFmpeg's own threads only cost. They are not idle ones: PyAV feeds a fixed-frame-size encoder (LAME,
1152 samples a frame) through a filter graph that cuts the input into frames, built on the stream's
first encode, and FFmpeg gives every graph a pool of slice threads (cores + 1: two workers on a
2-core box), started right then and joined when the encoder closes. The codec thread waits for them
to start (3 context switches inside the first chunk's encoding): on a loaded machine each is a
scheduling delay, and they were most of what the first mp3 byte of a REST request waited for
(`bench/first_byte.py`); the join held back the last bytes by up to ~10 ms. The graph only cuts
frames, which needs no thread.

PyAV does not bind FFmpeg's `av_cpu_force_count`, so it is called through ctypes on the libavutil
that PyAV loaded (found in /proc/self/maps; Linux). Where it cannot be found nothing changes:
FFmpeg then uses its threads as before, which is slower, not wrong.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import av

__all__ = ["av", "ffmpeg_threads_forced"]


def _loaded_libavutil() -> str | None:
    """The path of the libavutil this process mapped (PyAV's bundled copy or the system's)."""
    try:
        with Path("/proc/self/maps").open() as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if "/libavutil" in path and ".so" in path:
                    return path
    except OSError:
        pass
    return None


def _force_one_cpu() -> bool:
    path = _loaded_libavutil()
    if path is None:
        return False
    try:
        libavutil = ctypes.CDLL(path)  # the already-loaded library: the same global state PyAV uses
        libavutil.av_cpu_force_count(ctypes.c_int(1))
        return int(libavutil.av_cpu_count()) == 1
    except (OSError, AttributeError):
        return False


ffmpeg_threads_forced = _force_one_cpu()  # once per process, before any codec or graph opens
