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


def test_a_render_key_no_one_emits_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    root, f, line = _edit(tmp_path, "cartesia.yaml", "      flush_done: {type: flush_done,",
                          "      flush_don: {type: flush_done,")
    problem = _one_problem(root)
    where = "routes.tts_websocket.render.flush_don"
    assert problem.startswith(f"{f}:{line}: {where}: no event 'flush_don' here: "), problem
    assert "transform cartesia_tts" in problem and "flush_done" in problem
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "check", str(root)], capture_output=True, text=True)
    assert r.returncode == 1 and f"{f}:{line}:" in r.stdout


def test_a_field_the_event_lacks_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    # `turn_index` is a field of Flux's turn events, not of a TTS chunk
    root, f, line = _edit(tmp_path, "cartesia.yaml", "        step_time: $step_time\n        context_id: $context_id",
                          "        step_time: $turn_index\n        context_id: $context_id")
    problem = _one_problem(root)
    where = "routes.tts_sse.render.chunk.step_time"
    assert problem.startswith(f"{f}:{line}: {where}: unknown name(s) $turn_index"), problem
    assert "event 'chunk' has" in problem and "step_time" in problem


def test_runtime_events_are_known_only_where_the_runtime_emits_them(tmp_path: Path) -> None:
    # Deepgram speak answers `Clear` with `cleared` (a do: clear rule) and unknown types with a reply
    assert "cleared" in (REPO / "mappings" / "deepgram.yaml").read_text()
    root, f, line = _edit(tmp_path, "elevenlabs.yaml", "      end: {isFinal: true}\n",
                          "      end: {isFinal: true}\n      cleared: {isFinal: true}\n")
    problem = _one_problem(root)
    assert f"{f}:{line + 1}: routes.tts_stream_input.render.cleared: no event 'cleared' here" in problem, problem


def test_every_builtin_declares_its_events() -> None:
    import gateway.app  # noqa: F401  (registers every builtin handler)
    from gateway.dialects.http import BUILTINS
    from gateway.mapping.emits import BUILTIN_EVENTS

    assert set(BUILTINS) == set(BUILTIN_EVENTS)


def test_every_transform_declares_its_events() -> None:
    from gateway.mapping.transforms import TRANSFORMS

    assert TRANSFORMS and all(cls.EVENTS for cls in TRANSFORMS.values())


def test_the_readme_mapping_example_is_a_valid_mapping(tmp_path: Path) -> None:
    """The README's routes, inside a copy of the Deepgram mapping (its credentials, tables and errors),
    pass `check`; the example keeps up with the language."""
    import yaml

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### The mapping language in one example"):]
    start = section.index("```yaml") + len("```yaml")
    example = yaml.safe_load(section[start:section.index("```", start)])
    root = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", root)
    f = root / "deepgram.yaml"
    doc = yaml.safe_load(f.read_text())
    assert set(example["routes"]) == {"listen_live", "tts_websocket"}
    for name, route in example["routes"].items():
        doc["routes"][f"readme_{name}"] = {**route, "ws": f"/readme{route['ws']}"}
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert check(root) == []
