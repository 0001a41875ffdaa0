"""Unit tests of the generic pieces the ElevenLabs mapping added: the scheduled word buffer, `$messages`
templates, list params looked up item by item, and the Scribe word helpers."""

from __future__ import annotations

import math

import pytest

from gateway.dialects.textbuffer import WordBuffer
from gateway.errors import GatewayError
from gateway.mapping.functions import VALUE_FUNCTIONS
from gateway.mapping.params import CompiledTable, RequestData, compile_param
from gateway.mapping.schema import Param, Table
from gateway.mapping.template import Messages, compile_template


def test_word_buffer_without_schedule_forwards_whole_words() -> None:
    b = WordBuffer()
    assert b.push("Hel") is None
    assert b.push("lo wor") == "Hello"
    assert b.push("ld ") == "world"
    assert b.push("tail") is None and b.drain() == "tail"


def test_word_buffer_schedule_holds_until_each_count() -> None:
    b = WordBuffer([10, 20])
    assert b.push("one two ") is None  # 7 chars < 10
    assert b.push("three ") == "one two three"  # 13 >= 10
    assert b.push("four five six ") is None  # 13 < 20 (the next count)
    assert b.push("seven eight ") == "four five six seven eight"
    assert b.push("nine ten eleven twelve ") == "nine ten eleven twelve"  # the last count repeats: 22 >= 20
    assert b.push("x ") is None and b.drain() == "x"
    assert b.step == 0  # a flush starts the schedule over


def test_word_buffer_trigger_releases_at_the_smallest_count() -> None:
    b = WordBuffer([10, 50])
    assert b.push("abcdefghij ") == "abcdefghij"
    assert b.push("short ", trigger=True) is None  # 5 < 10
    assert b.push("enough text ", trigger=True) == "short enough text"  # 17 >= 10, though < 50


def test_messages_template_renders_several_and_skips_nulls() -> None:
    tpl = compile_template({"$messages": [{"a": "$x"}, {"$if": "$flag", "$then": {"b": "$x"}}]})
    out = tpl({"x": 1, "flag": True})
    assert isinstance(out, Messages) and out == [{"a": 1}, {"b": 1}]
    assert tpl({"x": 1, "flag": False}) == [{"a": 1}]


def test_list_param_items_through_a_table() -> None:
    table = CompiledTable("voices", Table(passthrough="[a-z]{3}"), {"rachel": "EMMA"})
    read = compile_param("inputs", Param.model_validate(
        {"from": "body.inputs", "type": "list", "table": "voices", "item_field": "voice_id"}), {"voices": table})
    got = read(RequestData(body={"inputs": [{"text": "a", "voice_id": "rachel"}, {"text": "b", "voice_id": "abc"}]}))
    assert got == [{"text": "a", "voice_id": "EMMA", "voice_id_requested": "rachel"},
                   {"text": "b", "voice_id": "abc", "voice_id_requested": "abc"}]
    with pytest.raises(GatewayError) as e:
        read(RequestData(body={"inputs": [{"text": "a"}]}))
    assert e.value.param == "inputs"
    with pytest.raises(ValueError):
        Param.model_validate({"from": "body.x", "type": "string", "item_field": "voice_id"})


def test_message_source_indexes_lists() -> None:
    assert RequestData(message={"voices": ["v1", "v2"]}).get("message.voices.1") == "v2"


def test_spaced_words_and_char_times() -> None:
    words = [{"text": "hello", "punctuated": "Hello,", "start": 0.1, "end": 0.4, "confidence": 0.99},
             {"text": "world", "punctuated": "world.", "start": 0.5, "end": 0.9, "confidence": 0.99}]
    out = VALUE_FUNCTIONS["spaced_words"](words)
    assert [(w["text"], w["type"]) for w in out] == [("Hello,", "word"), (" ", "spacing"), ("world.", "word")]
    assert out[1]["start"] == 0.4 and out[1]["end"] == 0.5
    assert math.isclose(out[0]["logprob"], math.log(0.99), abs_tol=1e-4)
    chars = VALUE_FUNCTIONS["char_times"](out[0])
    assert "".join(c["text"] for c in chars) == "Hello," and chars[0]["start"] == 0.1 and chars[-1]["end"] == 0.4
    assert VALUE_FUNCTIONS["joined_texts"]([{"text": "Hi "}, {"text": "there"}]) == "Hi there "
    assert VALUE_FUNCTIONS["complement"](0.4) == 0.6 and VALUE_FUNCTIONS["language_name"]("fr") == "French"
