"""Named event transforms: the closed registry of Python code a mapping may name.

Importing this package registers every transform.
"""

from gateway.mapping.transforms import (
    cartesia,  # noqa: F401  (registration; also its value functions)
    stt_collect,  # noqa: F401  (registration)
    stt_segments,  # noqa: F401  (registration)
    tts_audio,  # noqa: F401  (registration)
    tts_dialogue,  # noqa: F401  (registration)
    turns,  # noqa: F401  (registration)
)
from gateway.mapping.transforms.base import (
    SEND_GRADIUM,
    TRANSFORMS,
    Event,
    Events,
    EventTransform,
    SessionInfo,
    send_gradium,
)

__all__ = ["SEND_GRADIUM", "TRANSFORMS", "Event", "EventTransform", "Events", "SessionInfo", "send_gradium"]
