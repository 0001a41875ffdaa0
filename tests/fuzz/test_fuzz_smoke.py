"""A short seeded fuzz run over every route of the three dialects (issue 8): no 5xx, no hang, no unshaped
error, no echoed key, no internal-error close, no upstream socket left open. The long run is
`python -m tests.fuzz.run` (see its --help)."""

from __future__ import annotations

import io

from tests.conftest import Gateway
from tests.fuzz.runner import LEAK_MARK, fuzz


async def test_fuzz_smoke(gateway: Gateway, json_logs: io.StringIO) -> None:
    found = await fuzz(gateway, seed=8, http_per_dialect=60, ws_per_dialect=12, concurrency=12, deadline=20)
    assert found.http_cases >= 170 and found.ws_sessions >= 30, found.summary()
    assert found.defects == [], "\n".join(found.defects[:20])
    assert found.sockets_left_open == 0, found.summary()
    assert LEAK_MARK.decode() not in json_logs.getvalue()  # nor does the key reach the logs
