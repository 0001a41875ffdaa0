"""Named event transforms: the closed registry of Python code a mapping may name.

Importing this package registers every transform.
"""

from gateway.mapping.transforms import stt_collect, stt_segments, tts_audio  # noqa: F401  (registration)
from gateway.mapping.transforms.base import TRANSFORMS, Event, EventTransform, SessionInfo

__all__ = ["TRANSFORMS", "Event", "EventTransform", "SessionInfo"]
