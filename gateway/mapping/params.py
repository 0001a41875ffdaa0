"""Request fields -> typed, checked values (the `params` of a route), and value tables."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multidict import MultiMapping

from gateway import custom_ids
from gateway.errors import GatewayError
from gateway.mapping.schema import Param, Table

_MISSING = object()


@dataclass(slots=True)
class RequestData:
    """Everything a param may be read from, for one request or WebSocket session."""

    path: Mapping[str, str] = field(default_factory=dict)
    query: MultiMapping[str] | Mapping[str, Any] = field(default_factory=dict)
    header: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    form: MultiMapping[Any] | Mapping[str, Any] = field(default_factory=dict)
    message: Any = None

    def get(self, source: str, want_list: bool = False) -> Any:
        kind, _, rest = source.partition(".")
        if kind == "const":
            return rest
        container = getattr(self, kind)
        if not rest:
            return container if container is not None else _MISSING
        if kind in ("query", "form", "header", "path"):
            if want_list and hasattr(container, "getall"):
                values = container.getall(rest, [])
                return values if values else _MISSING
            value = container.get(rest, _MISSING)
            return value
        value = container
        for part in rest.split("."):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]  # `message.voices.0`
            else:
                return _MISSING
        return value


class CompiledTable:
    def __init__(self, name: str, spec: Table, entries: dict[str, Any], fallback: Any = None):
        self.name = name
        self.case_insensitive = spec.case_insensitive
        self.entries = {k.lower(): v for k, v in entries.items()} if spec.case_insensitive else dict(entries)
        self.passthrough = re.compile(spec.passthrough) if spec.passthrough else None
        self.miss = spec.miss
        self.fallback = fallback
        self.custom_ids = spec.custom_ids

    def lookup(self, key: Any, param: str) -> Any:
        k = str(key).lower() if self.case_insensitive else str(key)
        value = self.entries.get(k, _MISSING)
        if value is not _MISSING:
            return value
        if self.passthrough is not None and self.passthrough.fullmatch(str(key)):
            return key
        if self.custom_ids is not None:  # after the passthrough: a Gradium id is never read as a sealed one
            uid = custom_ids.decode(self.custom_ids, str(key))
            if uid is not None:
                return uid
        if self.fallback is not None:
            return self.fallback
        raise GatewayError(self.miss, f"{param}: {key!r} is not a known value", param)


def _coerce(name: str, spec: Param, raw: Any) -> Any:
    t = spec.type
    text = isinstance(raw, str)
    try:
        if t == "string":
            if isinstance(raw, str):
                return raw
            raise TypeError
        if t == "boolean":
            if isinstance(raw, bool):
                return raw
            if text and raw.lower() in ("true", "false", "1", "0"):
                return raw.lower() in ("true", "1")
            raise TypeError
        if t == "integer":
            if isinstance(raw, bool):
                raise TypeError
            if isinstance(raw, int):
                return raw
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            if text:
                return int(raw.strip())
            raise TypeError
        if t == "number":
            if isinstance(raw, bool):
                raise TypeError
            if isinstance(raw, int | float):
                value = float(raw)
            elif text:
                value = float(raw.strip())
            else:
                raise TypeError
            if not math.isfinite(value):
                raise ValueError
            return value
        if t == "list":
            if isinstance(raw, list):
                return raw
            if text:
                return [raw]
            raise TypeError
        if t == "object":
            if isinstance(raw, dict):
                return raw
            raise TypeError
        return raw
    except (TypeError, ValueError):
        shown = raw if isinstance(raw, str | int | float | bool) and len(str(raw)) < 60 else type(raw).__name__
        raise GatewayError(
            spec.error or "invalid_request", f"{name}: expected {t}, got {shown!r}", name
        ) from None


ParamReader = Callable[[RequestData], Any]


def _lookup_item(table: CompiledTable, field_name: str, name: str, item: Any) -> dict[str, Any]:
    """One item of a list param whose `item_field` goes through the table (the item is copied; the value
    as the client sent it stays under `<field>_requested`)."""
    if not isinstance(item, Mapping) or not isinstance(item.get(field_name), str):
        raise GatewayError("invalid_request", f"{name}: every item needs a string `{field_name}`", name)
    value = item[field_name]
    return {**item, field_name: table.lookup(value, name), f"{field_name}_requested": value}


def compile_param(name: str, spec: Param, tables: Mapping[str, CompiledTable]) -> ParamReader:
    sources = spec.sources
    want_list = spec.type == "list"
    table = tables[spec.table] if spec.table else None
    kind = spec.error or "invalid_request"

    def read(req: RequestData) -> Any:
        raw: Any = _MISSING
        for s in sources:
            raw = req.get(s, want_list)
            if raw is None or (spec.nullable_strings and raw == "null"):
                raw = _MISSING
            if raw is not _MISSING:
                break
        if raw is _MISSING:
            if spec.required:
                raise GatewayError(kind, f"{name} is required", name)
            value = spec.default
            if value is None:
                return None
        else:
            value = _coerce(name, spec, raw)
            if spec.choices is not None and value not in spec.choices:
                allowed = ", ".join(map(str, spec.choices))
                raise GatewayError(kind, f"{name}: {value!r} is not one of {allowed}", name)
            if spec.min is not None and isinstance(value, int | float) and value < spec.min:
                raise GatewayError(kind, f"{name}: {value} is below the minimum {spec.min:g}", name)
            if spec.max is not None and isinstance(value, int | float) and value > spec.max:
                raise GatewayError(kind, f"{name}: {value} is above the maximum {spec.max:g}", name)
            if spec.max_length is not None and isinstance(value, str | list) and len(value) > spec.max_length:
                raise GatewayError(kind, f"{name}: longer than {spec.max_length}", name)
        if table is not None and spec.item_field:
            value = [_lookup_item(table, spec.item_field, name, item) for item in value]
        elif table is not None:
            value = table.lookup(value, name)
        return value

    if spec.message is None:
        return read
    message = spec.message

    def read_with_message(req: RequestData) -> Any:
        try:
            return read(req)
        except GatewayError as err:
            if err.kind != kind:
                raise  # e.g. a table miss with its own kind keeps its message
            raise GatewayError(kind, message, name) from None

    return read_with_message
