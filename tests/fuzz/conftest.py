"""The fuzz tests' log capture."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from gateway.observability import configure_logging


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
