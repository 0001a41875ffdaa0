"""The start-up heap, frozen so that the garbage collector stops walking it.

After start-up a gateway process tracks about 150,000 long-lived objects: compiled mappings, pydantic
models, the imported libraries. CPython's oldest-generation collection walks every tracked object, which
takes 50-120 ms on this project's 2-core reference machine, and the event loop runs nothing meanwhile:
every stream in flight sees that pause. One comes whenever the objects that survived since the last reach
a quarter of the long-lived ones, which live sessions' state does under load. `gc.freeze()` moves what
exists now into a permanent generation that collections skip (a full collection then walks what sessions
hold: a few ms for 50,000 objects); what sessions allocate later is collected as before. Call it once,
when the process is ready to serve, never later: frozen objects are never freed, and a live session
frozen by mistake would leak.

`collect_less_often` is for the gateway's serving processes: CPython collects its youngest generation
whenever the container objects alive exceed those freed by 700. Almost everything a stream allocates per
frame (parsed messages, events, scopes, commands) is freed by reference counting within the frame, so what
crosses 700 is live sessions' state: 200 TTS streams triggered about 25 young and 2 middle collections a
second, each walking objects that are still alive, and promoting them to the old generation where they
bring on the full collections above sooner. At 10,000 the young generation is collected about once in two
seconds at that load (a pause of a millisecond or two); garbage cycles wait a little longer.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect start-up's garbage (frozen, it would stay forever), then freeze the rest; how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


YOUNG_THRESHOLD = 10_000


def collect_less_often() -> tuple[int, int, int]:
    """The youngest generation collected past YOUNG_THRESHOLD allocations, not 700; the new thresholds."""
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return gc.get_threshold()
