"""Load `mappings/*.yaml`: parse, validate (pydantic), merge tables and user overrides, compile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import VoiceSettings
from gateway.mapping.compiler import CompiledMapping, CompileError, compile_mapping
from gateway.mapping.params import CompiledTable
from gateway.mapping.schema import Mapping
from gateway.mapping.websocket import MOVED_KEYS
from gateway.yamlfile import ConfigFileError, YamlDoc, load_yaml, validate_doc


def _load_tables(doc: YamlDoc, mapping: Mapping, root: Path, voices: VoiceSettings) -> dict[str, CompiledTable]:
    tables: dict[str, CompiledTable] = {}
    problems: list[str] = []
    for name, spec in mapping.tables.items():
        entries: dict[str, Any] = {}
        for i, inc in enumerate(spec.include):
            where = f"{doc.path}:{doc.line_of(('tables', name, 'include', i))}"
            try:
                sub = load_yaml(root / inc.file)
            except ConfigFileError as exc:
                problems.append(f"{where}: tables.{name}.include: {exc}")
                continue
            block = sub.data.get(inc.key) if isinstance(sub.data, dict) else None
            if not isinstance(block, dict):
                problems.append(f"{sub.path}:1: {inc.key}: expected a mapping of id -> entry")
                continue
            for key, entry in block.items():
                if inc.value is None:
                    entries[str(key)] = entry
                elif isinstance(entry, dict) and inc.value in entry:
                    entries[str(key)] = entry[inc.value]
                else:
                    problems.append(
                        f"{sub.path}:{sub.line_of((inc.key, str(key)))}: {inc.key}.{key}: missing `{inc.value}`"
                    )
        entries.update(spec.entries)
        fallback = None
        if spec.user_overrides == "voices":
            entries.update(voices.map.get(mapping.provider, {}))
            fallback = voices.fallback.get(mapping.provider)
        tables[name] = CompiledTable(name, spec, entries, fallback)
    if problems:
        raise ConfigFileError(problems)
    return tables


def load_mapping(path: Path, voices: VoiceSettings | None = None) -> CompiledMapping:
    doc = load_yaml(path)
    mapping = validate_doc(doc, Mapping, moved=MOVED_KEYS)
    tables = _load_tables(doc, mapping, path.parent, voices or VoiceSettings())
    try:
        return compile_mapping(mapping, tables)
    except CompileError as exc:
        dotted = ".".join(str(p) for p in exc.loc)
        raise ConfigFileError([f"{doc.path}:{doc.line_of(exc.loc)}: {dotted}: {exc}"]) from None


def mapping_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.glob("*.yaml") if p.is_file())


_CACHE: dict[tuple[Any, ...], dict[str, CompiledMapping]] = {}


def _cache_key(root: Path, voices: VoiceSettings | None) -> tuple[Any, ...]:
    """What compiled mappings depend on: the files (path, mtime, size) and the voice overrides."""
    base = root.resolve()
    files = [base] if base.is_file() else sorted(base.rglob("*.yaml"))
    stats = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.is_file())
    return (str(base), voices.model_dump_json() if voices else "", stats)


def load_mappings(root: Path, voices: VoiceSettings | None = None) -> dict[str, CompiledMapping]:
    """Every provider mapping in `root`; all mistakes from all files are reported together.

    Compiled mappings are immutable, so an app built again from unchanged files (tests build one per
    test) reuses them instead of parsing the YAML again."""
    key = _cache_key(root, voices)
    cached = _CACHE.get(key)
    if cached is not None:
        return dict(cached)
    out = _load_mappings(root, voices)
    if len(_CACHE) >= 8:
        _CACHE.clear()
    _CACHE[key] = out
    return dict(out)


def _load_mappings(root: Path, voices: VoiceSettings | None) -> dict[str, CompiledMapping]:
    out: dict[str, CompiledMapping] = {}
    problems: list[str] = []
    files = mapping_files(root)
    if not files:
        raise ConfigFileError([f"{root}: no mapping files (*.yaml) found"])
    for f in files:
        try:
            m = load_mapping(f, voices)
        except ConfigFileError as exc:
            problems.extend(exc.problems)
            continue
        if m.provider in out:
            problems.append(f"{f}:1: provider: {m.provider!r} is defined twice")
        out[m.provider] = m
    if problems:
        raise ConfigFileError(problems)
    return out


def check(root: Path) -> list[str]:
    """Problems in the mapping files at `root` (empty when all is well); used by `gradium-gateway check`."""
    try:
        load_mappings(root)
    except ConfigFileError as exc:
        return exc.problems
    return []
