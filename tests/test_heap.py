"""The start-up heap is frozen (gateway/heap.py), in a child process so that pytest's own heap is left alone."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import gc
from gateway.app import create_app
from gateway.heap import freeze_startup_heap

create_app()
frozen = freeze_startup_heap()
tracked_before = len(gc.get_objects())

class Cycle:
    pass

gc.disable()  # so that the collect() below is the one that finds them
for _ in range(1000):  # garbage made after the freeze is still collected
    a, b = Cycle(), Cycle()
    a.b, b.a = b, a
del a, b
found = gc.collect()
print(frozen, tracked_before, len(gc.get_objects()), found)
"""


def test_startup_heap_is_frozen_and_later_garbage_still_collected() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    frozen, tracked_before, tracked_after, found = map(int, out.split())
    assert frozen > 10_000  # the compiled mappings and libraries: what a full collection no longer walks
    assert tracked_before < frozen // 10  # what collections still walk is a small remainder
    assert found >= 2000 and tracked_after <= tracked_before + 10  # the 1000 cycles were freed


def test_serving_processes_collect_the_young_generation_less_often() -> None:
    """A young collection per 10,000 net allocations, not 700 (gateway/heap.py); the other thresholds kept."""
    child = ("import gc\nfrom gateway.heap import YOUNG_THRESHOLD, collect_less_often\n"
             "before = gc.get_threshold()\nprint(*before, *collect_less_often(), YOUNG_THRESHOLD)")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout
    b0, b1, b2, a0, a1, a2, young = map(int, out.split())
    assert (a0, a1, a2) == (young, b1, b2) and young > b0
