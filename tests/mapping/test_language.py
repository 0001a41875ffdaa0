"""The mapping language on its own: templates, params, tables, matchers and `check` diagnostics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from multidict import MultiDict

from gateway.errors import GatewayError
from gateway.mapping.compiler import _compile_when
from gateway.mapping.loader import check, load_mappings
from gateway.mapping.params import CompiledTable, RequestData, compile_param
from gateway.mapping.schema import Param, Table
from gateway.mapping.template import TemplateError, compile_template

REPO = Path(__file__).resolve().parents[2]


def render(tpl: object, **scope: object) -> object:
    return compile_template(tpl)(scope)


def test_references_paths_and_functions() -> None:
    assert render("$a", a=1) == 1
    assert render("$a.b.1", a={"b": [10, 20]}) == 20
    assert render("$missing.deep") is None
    assert render("$speed | speed_to_padding_bonus", speed=1.2) == -2.0
    assert render("$speed | speed_to_padding_bonus", speed=None) is None
    assert render("Voice ${v} not found", v="x1") == "Voice x1 not found"
    assert render("$$literal") == "$literal"


def test_dicts_drop_nulls_and_empty_objects_vanish() -> None:
    tpl = {"keep": False, "gone": "$nope", "nested": {"x": "$nope"}, "zero": 0, "lst": ["$a", "b"]}
    assert render(tpl, a=1) == {"keep": False, "zero": 0, "lst": [1, "b"]}


def test_each_renders_items() -> None:
    tpl = {"words": {"$each": "$ws", "$as": {"word": "$item.t", "start": "$item.s"}}}
    assert render(tpl, ws=[{"t": "hi", "s": 0.1}, {"t": "yo", "s": 0.5}]) == {
        "words": [{"word": "hi", "start": 0.1}, {"word": "yo", "start": 0.5}]
    }
    assert render(tpl, ws=[]) == {"words": []}


def test_if_picks_a_branch() -> None:
    tpl = {"u": {"$if": "$on", "$then": ["$x"]}, "v": {"$if": "$on", "$then": 1, "$else": 2}}
    assert render(tpl, on=True, x=5) == {"u": [5], "v": 1}
    assert render(tpl, on=False, x=5) == {"v": 2}


def test_unknown_function_and_bad_reference_fail_at_compile_time() -> None:
    with pytest.raises(TemplateError, match="unknown function"):
        compile_template("$x | no_such_fn")
    with pytest.raises(TemplateError, match="bad reference"):
        compile_template("$1x")


def read(spec: dict, **sources: object) -> object:
    tables = {"t": CompiledTable("t", Table(entries={"a": "A"}, passthrough="[0-9]{3}", miss="voice_not_found"),
                                 {"a": "A"})}
    return compile_param("p", Param.model_validate(spec), tables)(RequestData(**sources))


def test_param_coercion_from_query_strings() -> None:
    q = MultiDict([("n", "3.5"), ("i", "7"), ("b", "true"), ("l", "x"), ("l", "y")])
    assert read({"from": "query.n", "type": "number"}, query=q) == 3.5
    assert read({"from": "query.i", "type": "integer"}, query=q) == 7
    assert read({"from": "query.b", "type": "boolean"}, query=q) is True
    assert read({"from": "query.l", "type": "list"}, query=q) == ["x", "y"]
    assert read({"from": "query.zz", "default": "d"}, query=q) == "d"


def test_param_type_and_range_errors_name_the_field() -> None:
    with pytest.raises(GatewayError) as e:
        read({"from": "body.text", "required": True}, body={})
    assert e.value.kind == "invalid_request" and e.value.param == "p"
    with pytest.raises(GatewayError, match="expected string"):
        read({"from": "body.text"}, body={"text": 5})
    with pytest.raises(GatewayError, match="expected number"):
        read({"from": "body.x", "type": "number"}, body={"x": True})
    with pytest.raises(GatewayError, match="above the maximum"):
        read({"from": "body.x", "type": "number", "max": 1.2}, body={"x": 3})
    with pytest.raises(GatewayError, match="not one of"):
        read({"from": "body.x", "choices": ["a", "b"]}, body={"x": "c"})
    assert read({"from": "form.x"}, form={"x": "null"}) is None  # SDK sends literal "null"


def test_tables_passthrough_and_miss_kind() -> None:
    assert read({"from": "body.v", "table": "t"}, body={"v": "a"}) == "A"
    assert read({"from": "body.v", "table": "t"}, body={"v": "123"}) == "123"
    with pytest.raises(GatewayError) as e:
        read({"from": "body.v", "table": "t"}, body={"v": "zzz"})
    assert e.value.kind == "voice_not_found"


def test_inbound_conditions() -> None:
    assert _compile_when("binary")(b"\x00")
    assert not _compile_when("binary")({"a": 1})
    m = _compile_when({"text": ""})
    assert m({"text": ""}) and not m({"text": " "}) and not m({}) and not m(b"")
    assert _compile_when({"text": {"type": "string"}})({"text": "x"})
    assert not _compile_when({"n": {"type": "number"}})({"n": True})
    assert _compile_when({"flush": {"present": True}})({"flush": False})
    assert _compile_when({"type": {"in": ["A", "B"]}})({"type": "B"})


def test_shipped_mappings_compile() -> None:
    mappings = load_mappings(REPO / "mappings")
    assert {"elevenlabs", "deepgram"} <= set(mappings)
    assert check(REPO / "mappings") == []


BROKEN = """\
provider: broken
credentials:
  - {from: header.x-key}
errors:
  http_body: {message: $error.message}
  kinds: {unauthorized: {status: 401, code: x}}
routes:
  r1:
    http: POST /x
    params:
      a: {from: body.a, table: nope}
    gradium: {kind: tts, audio_out: $a, setup: {voice_id: $undefined_name}}
    transform: {name: no_such_transform}
"""


def test_check_reports_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text(BROKEN)
    problems = check(f)
    assert problems and all(p.startswith(f"{f}:") for p in problems)
    assert any(":6: errors.kinds:" in p and "missing" in p for p in problems)
    # fix the kinds; the next layer of mistakes is reported with its line
    fixed = BROKEN.replace(
        "kinds: {unauthorized: {status: 401, code: x}}",
        "kinds: {" + ", ".join(f"{k}: {{status: 400, code: x}}" for k in _kinds()) + "}",
    )
    f.write_text(fixed)
    problems = check(f)
    assert problems == [f"{f}:11: routes.r1.params.a.table: unknown table 'nope'"]


def test_check_command_exit_code(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text(BROKEN)
    bad = subprocess.run([sys.executable, "-m", "gateway.cli", "check", str(f)], capture_output=True, text=True)
    assert bad.returncode == 1 and f"{f}:6:" in bad.stdout
    good = subprocess.run([sys.executable, "-m", "gateway.cli", "check", str(REPO / "mappings")],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr


def _kinds() -> list[str]:
    from gateway.mapping.schema import ERROR_KINDS

    return list(ERROR_KINDS)
