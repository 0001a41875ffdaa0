"""`gradium-gateway check` names the file and line of a mistake in a route's websocket section or its
`render:` templates (unknown or moved keys, events the route cannot emit, fields an event lacks)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.mapping.loader import check

REPO = Path(__file__).resolve().parents[2]


def _edit(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, Path, int]:
    """A copy of the shipped mappings with `old` replaced once in `name`; the line `new` starts on."""
    root = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", root)
    f = root / name
    text = f.read_text()
    assert text.count(old) == 1, old
    f.write_text(text.replace(old, new))
    first = new.strip().splitlines()[0]
    line = next(i for i, x in enumerate(f.read_text().splitlines(), 1) if first in x)
    return root, f, line


def _one_problem(root: Path) -> str:
    problems = check(root)
    assert len(problems) == 1, problems
    return problems[0]


def test_the_shipped_mappings_load() -> None:
    assert check(REPO / "mappings") == []


@pytest.mark.parametrize(
    ("old_key", "moved_to"),
    [
        ("context_errors: report", "contexts.on_error"),
        ("max_contexts: 64", "contexts.max"),
        ("reject_cleared: true", "contexts.reuse_cleared"),
        ("flush_after_ms: 3000", "text.flush_after_ms"),
        ("text_frames_only: true", "an inbound rule"),
    ],
)
def test_an_old_websocket_key_names_where_it_went(tmp_path: Path, old_key: str, moved_to: str) -> None:
    at = "      contexts:\n        max: 64"
    root, f, line = _edit(tmp_path, "cartesia.yaml", at, f"      {old_key}\n{at}")
    problem = _one_problem(root)
    key = old_key.split(":")[0]
    assert problem.startswith(f"{f}:{line}: routes.tts_websocket.websocket.{key}: "), problem
    assert f"it is now `{moved_to}" in problem


def test_a_misspelt_grouped_key_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    root, f, line = _edit(tmp_path, "cartesia.yaml", "        on_error: report", "        on_eror: report")
    problem = _one_problem(root)
    assert problem.startswith(f"{f}:{line}: routes.tts_websocket.websocket.contexts.on_eror: "), problem
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "check", str(root)], capture_output=True, text=True)
    assert r.returncode == 1 and f"{f}:{line}:" in r.stdout
