"""State every worker and replica must agree on: single-use claims and counters.

`SharedState` is the interface; `MemoryState` keeps it in this process (one worker), `RedisState`
(the `redis` extra, `state.redis_url`) shares it across workers and replicas. `open_state` picks one.
"""

from gateway.state.base import SharedState, StateUnavailable
from gateway.state.factory import SHARED_STATE, open_state
from gateway.state.memory import MemoryState
from gateway.state.tokens import SharedUsedTokens

__all__ = ["SHARED_STATE", "MemoryState", "SharedState", "SharedUsedTokens", "StateUnavailable", "open_state"]
