"""The fuzz tests' log capture."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from tests.conftest import json_log_sink


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The production log pipeline (JSON, redacted) into a buffer: structlog's development console renderer
    pretty-prints every traceback and would make the run measure that instead of the gateway."""
    with json_log_sink("info") as sink:
        yield sink
