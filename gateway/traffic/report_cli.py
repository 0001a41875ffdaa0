"""`gradium-gateway shadow report | export | prune`: the comparison store from the command line."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

import orjson

DEFAULT_DB = "./gateway-shadow.db"
FORMATS = ("table", "json", "csv", "html")  # what `report.render` draws; kept here so parsing imports nothing


def store_options(settings: Any) -> tuple[str, float]:
    """(path, retention_days) of the SQLite store from the settings' `shadow.store`, else the defaults."""
    store = getattr(getattr(settings, "shadow", None), "store", None)
    return str(getattr(store, "path", DEFAULT_DB)), float(getattr(store, "retention_days", 14))


def _sources(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    dbs, jsonl = list(args.db or []), list(args.jsonl or [])
    if not dbs and not jsonl:
        settings = None
        if args.config is not None:
            from gateway.config import load_settings

            settings = load_settings(args.config)
        dbs = [store_options(settings)[0]]
    return dbs, jsonl


def _load(args: argparse.Namespace) -> list[dict[str, Any]]:
    import time

    from gateway.traffic.report import parse_since
    from gateway.traffic.store import load_rows

    since_ts = time.time() - parse_since(args.since) if args.since else None
    return load_rows(*_sources(args), since_ts=since_ts)


def parse_thresholds(items: list[str]) -> dict[str, Any]:
    """`wer=0.05/0.5` -> {"wer": Threshold(0.05, 0.5)} (absolute / relative, traffic.md §5.4)."""
    from gateway.traffic.verdicts import DEFAULT_THRESHOLDS, Threshold

    out: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        absolute, _, relative = value.partition("/")
        if name not in DEFAULT_THRESHOLDS:
            raise ValueError(f"--threshold {item!r}: metric is one of {', '.join(DEFAULT_THRESHOLDS)}")
        try:
            out[name] = Threshold(float(absolute), float(relative or DEFAULT_THRESHOLDS[name].relative))
        except ValueError:
            raise ValueError(f"--threshold {item!r}: expected METRIC=ABSOLUTE[/RELATIVE], e.g. wer=0.05/0.5") from None
    return out


def _write(args: argparse.Namespace, text: str) -> None:
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _cmd_report(args: argparse.Namespace) -> int:
    from gateway.traffic.report import build_report, parse_since, render

    since = parse_since(args.since) if args.since else None
    report = build_report(_load(args), since_s=since, tenant=args.tenant, provider=args.provider, route=args.route,
                          thresholds=parse_thresholds(args.threshold or []))
    _write(args, render(report, args.format))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    rows = _load(args)
    lines = (orjson.dumps({"event": "shadow.comparison", **r}).decode() + "\n" for r in rows)
    _write(args, "".join(lines))
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from gateway.traffic.store import prune

    dbs, _ = _sources(args)
    settings_days = args.days
    for path in dbs:
        if not Path(path).is_file():
            print(f"gradium-gateway: no such store: {path}", file=sys.stderr)
            return 2
        conn = sqlite3.connect(path)
        try:
            n = prune(conn, settings_days)
            conn.execute("VACUUM")
        finally:
            conn.close()
        print(f"{path}: deleted {n} pairs older than {settings_days:g} days")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", action="append", metavar="FILE",
                   help="SQLite store (repeatable; globs like 'shadow-*.db' merge a fleet's files). "
                        "Default: shadow.store.path of --config, else ./gateway-shadow.db")
    p.add_argument("--jsonl", action="append", metavar="FILE",
                   help="log file with `shadow.comparison` lines (repeatable, globs allowed)")
    p.add_argument("--config", type=Path, default=None, help="YAML settings file (for shadow.store.path)")
    p.add_argument("--since", default=None, help="only pairs started in the last N s/m/h/d, e.g. 24h")
    p.add_argument("--out", default=None, help="write to this file instead of stdout")


def add_parser(sub: Any) -> None:
    shadow = sub.add_parser("shadow", help="shadow comparison store: report, export, prune")
    ssub = shadow.add_subparsers(dest="shadow_command", required=True)
    r = ssub.add_parser("report", help="summarize stored pairs per provider, route and primary side")
    _common(r)
    r.add_argument("--tenant", default=None)
    r.add_argument("--provider", default=None)
    r.add_argument("--route", default=None)
    r.add_argument("--format", choices=FORMATS, default="table")
    r.add_argument("--threshold", action="append", metavar="METRIC=ABS/REL",
                   help="verdict threshold, e.g. wer=0.05/0.5 or first_output_ms=80 (repeatable)")
    r.set_defaults(func=_guard(_cmd_report))
    e = ssub.add_parser("export", help="stored pairs as JSON lines (the log sink's shape)")
    _common(e)
    e.set_defaults(func=_guard(_cmd_export))
    p = ssub.add_parser("prune", help="delete pairs older than --days")
    _common(p)
    p.add_argument("--days", type=float, required=True)
    p.set_defaults(func=_guard(_cmd_prune))


def _guard(fn: Any) -> Any:
    """Missing files, foreign databases and bad flags are one clear line and exit 2, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        from gateway.yamlfile import ConfigFileError

        try:
            return int(fn(args))
        except (FileNotFoundError, ValueError, sqlite3.Error, ConfigFileError) as exc:
            print(f"gradium-gateway: {exc}", file=sys.stderr)
            return 2

    return run
