"""Templates: YAML values with `$references`, compiled once into plain callables.

- `"$name"`, `"$name.field.0"`: the value at that path in the scope (None when absent);
- `"$name | fn | fn2"`: piped through named value functions (`functions.VALUE_FUNCTIONS`);
- `"text ${name} text"`: string interpolation;
- `{"$each": "$list", "$as": {...}}`: render `$as` once per item, the item bound as `$item`;
- `{"$if": "$flag", "$then": ..., "$else": ...}`: one or the other (`$else` defaults to null);
- `{"$messages": [tpl, tpl, ...]}`: one event rendered as several messages, in order (a `Messages`
  list; items that render null are left out, so `$if` makes a message optional). Streaming
  transports send each as its own frame or line;
- dicts drop keys whose value renders None; a non-empty dict template that renders empty is None,
  so an absent optional object disappears from its parent instead of showing up as `{}`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from gateway.mapping.functions import VALUE_FUNCTIONS

Scope = Mapping[str, Any]
Render = Callable[[Scope], Any]

_REF = re.compile(r"^\$([A-Za-z_][\w-]*(?:\.[\w-]+)*)\s*((?:\|\s*[A-Za-z_]\w*\s*)*)$")
_INTERP = re.compile(r"\$\{([A-Za-z_][\w-]*(?:\.[\w-]+)*)\}")


class TemplateError(ValueError):
    pass


class Messages(list):  # type: ignore[type-arg]
    """Several messages rendered from one event (`$messages`): sent one by one, never as an array."""

    __slots__ = ()


def _step(value: Any, part: str) -> Any:
    """One step of a path into anything that is not a plain dict (a dict is read with `.get` inline)."""
    if isinstance(value, Mapping):
        return value.get(part)
    if isinstance(value, list | tuple) and part.lstrip("-").isdigit():
        idx = int(part)
        return value[idx] if -len(value) <= idx < len(value) else None
    return getattr(value, part, None) if value is not None and not isinstance(value, str) else None


def lookup(scope: Any, path: tuple[str, ...]) -> Any:
    value = scope
    for part in path:
        # scopes and events are plain dicts: an exact class test is much cheaper than the ABC check
        value = value.get(part) if value.__class__ is dict else _step(value, part)
        if value is None:
            return None
    return value


def _getter(path: tuple[str, ...]) -> Render:
    """`lookup` for one path, with the one- and two-part paths (`$name`, `$item.field`) unrolled."""
    if len(path) == 1:
        key = path[0]
        return lambda scope: scope.get(key)
    if len(path) == 2:
        head, field = path

        def get2(scope: Scope) -> Any:
            v = scope.get(head)
            if v.__class__ is dict:
                return v.get(field)
            return None if v is None else _step(v, field)

        return get2
    return lambda scope: lookup(scope, path)


def references(value: Any) -> set[str]:
    """Top-level names a template reads (used to validate templates against known params)."""
    out: set[str] = set()
    if isinstance(value, str):
        m = _REF.match(value.strip())
        if m:
            out.add(m.group(1).split(".")[0])
        out.update(x.split(".")[0] for x in _INTERP.findall(value))
    elif isinstance(value, dict):
        for v in value.values():
            out |= references(v)
    elif isinstance(value, list):
        for v in value:
            out |= references(v)
    return out


def compile_template(value: Any) -> Render:
    if isinstance(value, str):
        return _compile_str(value)
    if isinstance(value, dict):
        if "$each" in value:
            return _compile_each(value)
        if "$if" in value:
            return _compile_if(value)
        if "$messages" in value:
            return _compile_messages(value)
        return _compile_dict(value)
    if isinstance(value, list):
        items = [compile_template(v) for v in value]
        return lambda scope: [r(scope) for r in items]
    return lambda scope: value


def _compile_str(text: str) -> Render:
    m = _REF.match(text.strip())
    if m:
        path = tuple(m.group(1).split("."))
        fns = [f.strip() for f in m.group(2).split("|") if f.strip()]
        for fn in fns:
            if fn not in VALUE_FUNCTIONS:
                raise TemplateError(f"unknown function {fn!r} (known: {', '.join(sorted(VALUE_FUNCTIONS))})")
        funcs = [VALUE_FUNCTIONS[f] for f in fns]
        get = _getter(path)
        if not funcs:
            return get

        def piped(scope: Scope) -> Any:
            v = get(scope)
            for f in funcs:
                v = f(v)
            return v

        return piped
    if "${" in text:
        parts = _INTERP.split(text)
        # odd indexes are reference paths, even ones literal text
        compiled: list[str | tuple[str, ...]] = [
            p if i % 2 == 0 else tuple(p.split(".")) for i, p in enumerate(parts)
        ]

        def interp(scope: Scope) -> str:
            out = []
            for p in compiled:
                if isinstance(p, str):
                    out.append(p)
                else:
                    v = lookup(scope, p)
                    out.append("" if v is None else str(v))
            return "".join(out)

        return interp
    if text.startswith("$$"):
        literal = text[1:]
        return lambda scope: literal
    if text.startswith("$"):
        raise TemplateError(f"bad reference {text!r}: use $name, $name.field or $name | function")
    return lambda scope: text


def _compile_dict(tpl: dict[str, Any]) -> Render:
    if not any(isinstance(v, str | dict | list) for v in tpl.values()):
        frozen = dict(tpl)
        return lambda scope: frozen
    items = [(k, compile_template(v)) for k, v in tpl.items()]
    nonempty = bool(items)

    def render(scope: Scope) -> Any:
        out = {}
        for k, r in items:
            v = r(scope)
            if v is not None:
                out[k] = v
        return out if out or not nonempty else None

    picked = _fields_of_one(tpl)
    if picked is None:
        return render
    head, fields = picked

    def pick(scope: Scope) -> Any:
        # what `render` gives when every value is a field of one object (`$alignment.chars`, ...): one
        # lookup of the object, and None at once when it is absent (most audio chunks carry no alignment)
        obj = scope.get(head)
        if obj is None:
            return None
        if obj.__class__ is not dict:
            return render(scope)
        out = {}
        for k, name in fields:
            v = obj.get(name)
            if v is not None:
                out[k] = v
        return out or None

    return pick


def _fields_of_one(tpl: dict[str, Any]) -> tuple[str, list[tuple[str, str]]] | None:
    """(name, [(key, field)]) when every value of `tpl` is a plain `$name.field` of the same name; else None."""
    head: str | None = None
    fields: list[tuple[str, str]] = []
    for k, v in tpl.items():
        ref = _field_ref(v)
        if ref is None or (head is not None and ref[0] != head):
            return None
        head = ref[0]
        fields.append((k, ref[1]))
    return (head, fields) if head is not None else None


def _field_ref(value: Any) -> tuple[str, str] | None:
    """(name, field) when `value` is exactly a `$name.field` reference (no function), else None."""
    m = _REF.match(value.strip()) if isinstance(value, str) else None
    if m is None or m.group(2).strip():
        return None
    path = m.group(1).split(".")
    return (path[0], path[1]) if len(path) == 2 else None


def _compile_each(tpl: dict[str, Any]) -> Render:
    if set(tpl) != {"$each", "$as"}:
        raise TemplateError("$each needs exactly `$each: $list` and `$as: <template>`")
    source = compile_template(tpl["$each"])
    item = compile_template(tpl["$as"])
    fields = _projection(tpl["$as"])

    def render(scope: Scope) -> Any:
        seq = source(scope)
        if seq is None:
            return None
        inner: dict[str, Any] | None = None
        out = []
        for x in seq:
            if fields is not None and x.__class__ is dict:
                # what `item(inner)` gives for a dict item, without a scope or a call per field
                row = {}
                for k, name, const in fields:
                    v = const if name is None else x.get(name)
                    if v is not None:
                        row[k] = v
                out.append(row or None)
                continue
            if inner is None:
                inner = dict(scope)
            inner["item"] = x
            out.append(item(inner))
        return out

    return render


def _projection(tpl: Any) -> list[tuple[str, str | None, Any]] | None:
    """`$as` templates that only pick fields of the item (`{word: $item.text, confidence: 0.99}`, the
    per-word shape of transcripts): (key, item field or None, constant) per key, in order; else None."""
    if not isinstance(tpl, dict) or not tpl:
        return None
    out: list[tuple[str, str | None, Any]] = []
    for k, v in tpl.items():
        if isinstance(v, dict | list):
            return None
        if isinstance(v, str):
            ref = _field_ref(v)
            if ref is None or ref[0] != "item":
                return None
            out.append((k, ref[1], None))
        else:
            out.append((k, None, v))
    return out if any(name is not None for _, name, _ in out) else None


def _compile_if(tpl: dict[str, Any]) -> Render:
    if not set(tpl) <= {"$if", "$then", "$else"} or "$then" not in tpl:
        raise TemplateError("$if needs `$if: $flag`, `$then: <template>` and optionally `$else`")
    cond = compile_template(tpl["$if"])
    then = compile_template(tpl["$then"])
    other = compile_template(tpl.get("$else"))
    return lambda scope: then(scope) if cond(scope) else other(scope)


def _compile_messages(tpl: dict[str, Any]) -> Render:
    if set(tpl) != {"$messages"} or not isinstance(tpl["$messages"], list):
        raise TemplateError("$messages needs a list of message templates")
    items = [compile_template(v) for v in tpl["$messages"]]

    def render(scope: Scope) -> Any:
        out = Messages(m for r in items if (m := r(scope)) is not None)
        return out or None

    return render
