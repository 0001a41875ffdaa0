"""Where a serving gateway compares its pairs: in a child process, at a lower CPU priority, from a kept heap.

A pair's comparison is 4-10 ms of work per TTS pair (decoding both legs, BS.1770 loudness through scipy's
filters, levels and silences with numpy) and a few ms per STT pair (normalizers, jiwer). In the recorder's
thread that work holds the GIL: Python code for up to a switch interval, C calls (scipy, numpy) for their
whole length, which a smaller switch interval does not shorten. The primaries' event loop then waits for
it whenever a socket becomes readable. Measured with a loop timing 1 ms sleeps while pairs were compared
next to it (quiet 2-core machine): p99 lateness 0.2 ms idle, 2.1-3.4 ms with the comparator in a thread
(2.5-2.7 ms with a 0.5 ms switch interval), 0.28 ms with it in a process. So the recorder's thread only
hands the pair over and waits here; the child (forked from a server that imported the comparison libraries
once, so it starts in milliseconds) does the work at nice 10, so that a busy machine serves first. It also
reads the legs' frames into traces (JSON parsing, base64 decoding of the audio: most of a pair's cost to
the serving process when its recorder thread did it): it is handed the frames as they came
(`bridge.PairSource`), which pickle as a few strings and byte strings, not thousands of objects.

The child is started once per gateway process and restarted if it dies; a pair whose comparison was
lost with it gets a `compare_error` row like any comparator failure (`PairRecorder`). Like any
multiprocessing child it imports the parent's main module (`gradium-gateway`, `python -m gateway.cli`
and pytest guard theirs); if it cannot start at all, pairs are compared in the recorder's thread as
before, with a warning.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import threading
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor

import structlog

from gateway.traffic.compare import Comparison, compare_pair
from gateway.traffic.recorder import Job, built, warm_up

log = structlog.get_logger("gateway.shadow")

NICE = 10
COMPARE_TIMEOUT_S = 60.0  # a pair of up to `MAX_AUDIO_S` per leg takes well under a second
PRELOAD = ["gateway.traffic.compare", "gateway.traffic.recorder", "gateway.traffic.bridge"]


# glibc's mallopt parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HEAP_KEEP = 64 << 20  # the freed heap the child keeps (a 5 s TTS pair's arrays are ~11 MB)
HEAP_MMAP = 32 << 20  # glibc's largest threshold on 64-bit systems


def _keep_heap() -> bool:
    """glibc serves every allocation over 128 KB with its own `mmap` and unmaps it when freed, so each TTS
    comparison (its audio arrays, their float64 copies, the filters' outputs) mapped ~11 MB of fresh pages
    and took ~2,800 page faults, the kernel zeroing each page. That zeroing streams through the cache the
    serving processes share, and the session started next was slower for it (bench/README.md, "Shadow
    tail"). Arrays up to `HEAP_MMAP` now come from the heap, which keeps `HEAP_KEEP` of freed memory: the
    same pages serve every comparison. False where there is no glibc (then nothing changes)."""
    try:
        # the symbols already loaded into this process (libc's among them): no `find_library`, which runs
        # `ldconfig` in a subprocess, at every start of the child
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, HEAP_MMAP)) and bool(mallopt(M_TRIM_THRESHOLD, HEAP_KEEP))


def _child_start() -> None:
    os.nice(NICE)
    _keep_heap()
    warm_up()


def _ready() -> bool:
    return True


def _compare(job: Job, store_text: bool) -> Comparison:
    """In the child: the pair's legs read in (JSON, base64 audio), then compared."""
    return compare_pair(built(job), store_text=store_text)


class ProcessComparator:
    """`compare(pair)` in the child; blocking, called from the recorder's thread."""

    def __init__(self, *, store_text: bool = False, timeout_s: float = COMPARE_TIMEOUT_S) -> None:
        self.store_text = store_text
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pool = self._start()
        self.in_thread = False  # the child could not start: compare in the caller's thread

    @staticmethod
    def _start() -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ProcessPoolExecutor(1, mp_context=ctx, initializer=_child_start)

    def warm(self) -> None:
        """Start the child and its imports now (off the event loop), not at the first pair."""
        try:
            self._pool.submit(_ready).result(timeout=60)
        except Exception as exc:
            log.warning("shadow.comparator_in_thread", error=repr(exc),
                        message="the comparison process could not start: pairs are compared in a thread")
            self.in_thread = True
            self._pool.shutdown(wait=False, cancel_futures=True)
            warm_up()  # here, then: the first pair's imports would hold the GIL for a second

    def compare(self, pair: Job) -> Comparison:
        if self.in_thread:
            return _compare(pair, self.store_text)
        with self._lock:
            pool = self._pool
        try:
            return pool.submit(_compare, pair, self.store_text).result(timeout=self.timeout_s)
        except TimeoutError:
            self._replace(pool, kill=True)  # a comparison that never ends would hold every later pair
            raise
        except BrokenExecutor:
            self._replace(pool)  # the child died (killed, out of memory): a new one for the next pairs
            raise

    def _replace(self, pool: ProcessPoolExecutor, kill: bool = False) -> None:
        with self._lock:
            if self._pool is not pool:
                return
            if kill:
                # the executor has no way to stop a running call: its worker process is ended
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.kill()
                pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()

    def close(self) -> None:
        with self._lock:
            self._pool.shutdown(wait=True, cancel_futures=True)
