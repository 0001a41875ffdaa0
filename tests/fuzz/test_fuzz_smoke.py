"""A short seeded fuzz run over every route of the three dialects (issue 8): no 5xx, no hang, no unshaped
error, no echoed key, no internal-error close, no upstream socket left open. The long run is
`python -m tests.fuzz.run` (see its --help)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from gateway.observability import configure_logging
from tests.conftest import Gateway
from tests.fuzz.runner import LEAK_MARK, fuzz


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The production log pipeline (JSON, redacted) into a buffer: structlog's development console renderer
    pretty-prints every traceback and would make the run measure that instead of the gateway."""
    sink = io.StringIO()
    configure_logging("info", sink)
    yield sink
    structlog.reset_defaults()
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_gateway_json", False)]:
        root.removeHandler(h)


async def test_fuzz_smoke(gateway: Gateway, json_logs: io.StringIO) -> None:
    found = await fuzz(gateway, seed=8, http_per_dialect=60, ws_per_dialect=12, concurrency=12, deadline=20)
    assert found.http_cases >= 170 and found.ws_sessions >= 30, found.summary()
    assert found.defects == [], "\n".join(found.defects[:20])
    assert found.sockets_left_open == 0, found.summary()
    assert LEAK_MARK.decode() not in json_logs.getvalue()  # nor does the key reach the logs
