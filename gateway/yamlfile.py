"""YAML loading that remembers where every value came from, for file:line:field error messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]


@dataclass
class YamlDoc:
    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Iterable[str | int]) -> int:
        """Line of the deepest known node on `loc` (pydantic locations may go deeper than the YAML)."""
        key = tuple(loc)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), 1)


class ConfigFileError(ValueError):
    """One or more mistakes in a YAML file; `str()` lists them as `file:line: field: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


_SCALARS = yaml.SafeLoader("")


def _construct(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        _SCALARS.flatten_mapping(node)  # resolve `<<:` merge keys like a normal load would
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _SCALARS.construct_object(key_node, deep=True)
            lines[(*loc, str(key))] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*loc, str(key)), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, i), lines) for i, item in enumerate(node.value)]
    return _SCALARS.construct_object(node, deep=True)


def load_yaml(path: Path) -> YamlDoc:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        # libyaml's parser when PyYAML has it: ~8x faster on the voice tables (every app start, every test)
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigFileError([f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    lines: dict[Loc, int] = {}
    data = _construct(node, (), lines) if node is not None else {}
    return YamlDoc(path, data, lines)


def describe_validation_error(
    doc: YamlDoc, exc: ValidationError, prefix: Loc = (), moved: Mapping[tuple[str, str], str] | None = None
) -> list[str]:
    """`file:line: dotted.path: message` per error; `moved`: (parent key, old key) -> where that key went."""
    problems = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if moved and err["type"] == "extra_forbidden" and len(loc) >= 2:
            new = moved.get((str(loc[-2]), str(loc[-1])))
            if new is not None:
                msg = f"unknown key (it is now `{new}`)"
        problems.append(f"{doc.path}:{doc.line_of(loc)}: {dotted}: {msg}")
    return problems


M = TypeVar("M", bound=BaseModel)


def validate_doc(
    doc: YamlDoc, model: type[M], moved: Mapping[tuple[str, str], str] | None = None, **context: Any
) -> M:
    try:
        return model.model_validate(doc.data if doc.data is not None else {}, context=context or None)
    except ValidationError as exc:
        raise ConfigFileError(describe_validation_error(doc, exc, moved=moved)) from exc
