"""The template engine's fast paths (plain-dict paths, `$each` rows that only pick item fields) render
exactly what the general path renders, including for items that are not dicts."""

from __future__ import annotations

from typing import Any

from gateway.mapping.template import compile_template


class Obj:
    text = "attr"
    start = 1.5


ROW = {"word": "$item.text", "start": "$item.start", "confidence": 0.99, "gone": None}
SCOPE: dict[str, Any] = {
    "words": [{"text": "hi", "start": 1.0}, {"text": None}, {}, Obj(), "str", ["a", "b"], None],
    "a": {"b": {"c": 3}, "l": [1, 2]},
    "o": Obj(),
}


def test_each_rows_picked_from_dict_items_match_the_general_rendering() -> None:
    rows = compile_template({"$each": "$words", "$as": ROW})(SCOPE)
    # the same template with a piped field takes the general path for every item
    general = compile_template({"$each": "$words", "$as": {**ROW, "word": "$item.text | to_str"}})(SCOPE)
    assert rows == [
        {"word": "hi", "start": 1.0, "confidence": 0.99},
        {"confidence": 0.99},
        {"confidence": 0.99},
        {"word": "attr", "start": 1.5, "confidence": 0.99},
        {"confidence": 0.99},
        {"confidence": 0.99},
        {"confidence": 0.99},
    ]
    assert rows == general
    only_fields = compile_template({"$each": "$words", "$as": {"word": "$item.text"}})(SCOPE)
    assert only_fields == [{"word": "hi"}, None, None, {"word": "attr"}, None, None, None]
    assert compile_template({"$each": "$missing", "$as": ROW})(SCOPE) is None


def test_paths_read_dicts_lists_and_attributes() -> None:
    assert compile_template("$a.b.c")(SCOPE) == 3
    assert compile_template("$a.l.1")(SCOPE) == 2
    assert compile_template("$a.l.-1")(SCOPE) == 2
    assert compile_template("$a.l.5")(SCOPE) is None
    assert compile_template("$o.text")(SCOPE) == "attr"
    assert compile_template("$words.4.x")(SCOPE) is None  # a string has no fields
    assert compile_template("$nothing.x")(SCOPE) is None
    assert compile_template("x ${a.b.c} ${o.start}")(SCOPE) == "x 3 1.5"



def test_dicts_of_one_objects_fields_match_the_general_rendering() -> None:
    """`{chars: $al.chars, ms: $al.ms}` (ElevenLabs' per-chunk alignment): one lookup of `al`, the same result."""
    tpl = {"chars": "$al.chars", "ms": "$al.ms"}
    general = {**tpl, "none": None}  # a constant (null, so never rendered) keeps the general path
    for al in ({"chars": ["a"], "ms": [1]}, {"chars": ["a"]}, {"chars": None}, {}, None, Obj(), "str", [1]):
        assert compile_template(tpl)({"al": al}) == compile_template(general)({"al": al}), al
    assert compile_template(tpl)({"al": {"chars": ["a"], "ms": [1]}}) == {"chars": ["a"], "ms": [1]}
    assert compile_template(tpl)({"al": {}}) is None and compile_template(tpl)({}) is None
    assert compile_template({"c": "$o.text"})({"o": Obj()}) == {"c": "attr"}
    # mixed names and deeper paths keep the general path and its results
    mixed = compile_template({"a": "$al.chars", "b": "$o.text"})
    assert mixed({"al": {"chars": 1}, "o": Obj()}) == {"a": 1, "b": "attr"}
    assert compile_template({"a": "$a.b.c", "k": 1})(SCOPE) == {"a": 3, "k": 1}
