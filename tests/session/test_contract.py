"""The WebSocket contract in the mapping language is checked at load time: action arguments are typed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.mapping.actions import ACTION_ARGS, check_args
from gateway.mapping.loader import check

REPO = Path(__file__).resolve().parents[2]


def test_a_misspelt_action_field_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", root)
    f = root / "cartesia.yaml"
    text = f.read_text()
    assert text.count("flush_after_ms: $message.max_buffer_delay_ms") == 1
    f.write_text(text.replace("flush_after_ms: $message.max", "flush_afer_ms: $message.max"))
    line = next(i for i, x in enumerate(f.read_text().splitlines(), 1) if "flush_afer_ms" in x)
    problems = check(root)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{f}:{line}: routes.tts_websocket.websocket.inbound.2.fields.flush_afer_ms: ")
    assert "unknown field 'flush_afer_ms' for do: text" in problems[0]
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "check", str(root)], capture_output=True, text=True)
    assert r.returncode == 1 and f"{f}:{line}:" in r.stdout


@pytest.mark.parametrize("action", sorted(ACTION_ARGS))
def test_every_action_has_an_argument_model(action: str) -> None:
    problems = check_args(action, {"no_such_field": 1})
    if action == "reply":  # its fields are the reply event's own
        assert problems == []
    else:
        assert problems[0][0] == "no_such_field" and f"for do: {action}" in problems[0][1]


def test_control_needs_its_control() -> None:
    assert check_args("control", {}) == [("control", "do: control needs `control`")]
