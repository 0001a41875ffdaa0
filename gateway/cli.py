"""`gradium-gateway serve | check | emulate`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import sys
from pathlib import Path

import structlog
from aiohttp import web

from gateway.config import PACKAGE_MAPPINGS, Settings, load_settings
from gateway.observability import configure_logging
from gateway.yamlfile import ConfigFileError

log = structlog.get_logger("gateway")


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def startup_warnings(settings: Settings) -> list[tuple[str, str]]:
    """Configurations that start but will disappoint: said once, at start-up."""
    out: list[tuple[str, str]] = []
    auth = settings.auth
    if auth.token_secret is None:
        out.append(("auth.token_secret_unset",
                    "GATEWAY_TOKEN_SECRET is not set: gateway tokens are signed with a random per-process secret, "
                    "so they stop working on restart and on any other worker or replica"))
    if auth.mode == "managed" and not auth.keys:
        out.append(("auth.serves_nothing",
                    "auth.mode is managed but auth.keys is empty: every request will be refused with 401"))
    elif auth.mode == "managed":
        keyless = [t for t, v in auth.tenants.items() if v.gradium_api_key is None]
        if keyless and settings.gradium.api_key is None:
            out.append(("auth.tenants_without_gradium_key",
                        f"tenants {sorted(keyless)} have no gradium_api_key and GRADIUM_API_KEY is not set: "
                        "their requests will be refused with 401"))
    return out


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    from gateway.app import create_app

    if settings.uses_emulator:
        # First line on purpose: nobody should mistake the emulator for Gradium.
        log.warning(
            "gateway.using_builtin_emulator",
            message="No Gradium key or URL configured (GRADIUM_API_KEY / GRADIUM_BASE_URL): serving against the "
            "built-in Gradium EMULATOR. Audio is synthetic test tones, not speech.",
        )
    for event, message in startup_warnings(settings):
        log.warning(event, message=message)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    sites = [web.TCPSite(runner, settings.host, settings.port, reuse_address=True)]
    if settings.tls_enabled:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
        sites.append(web.TCPSite(runner, settings.host, settings.tls_port, ssl_context=ctx, reuse_address=True))
    for site in sites:
        await site.start()
    log.info(
        "gateway.listening",
        http=f"http://{settings.host}:{settings.port}",
        https=f"https://{settings.host}:{settings.tls_port}" if settings.tls_enabled else None,
        providers=sorted(p.stem for p in Path(settings.mappings_dir).glob("*.yaml")),
    )
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await runner.cleanup()


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, host=args.host, port=args.port, tls_port=args.tls_port)
    except ConfigFileError as exc:
        print(f"gradium-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        from gateway.app import create_app

        create_app(settings)  # fail fast on mapping errors, before binding ports
    except ConfigFileError as exc:
        print(f"gradium-gateway: invalid mappings:\n{exc}", file=sys.stderr)
        return 2
    _install_uvloop()
    # SIGTERM (docker stop) arrives as aiohttp's GracefulExit: a clean shutdown, not a failure.
    with contextlib.suppress(KeyboardInterrupt, web.GracefulExit):
        asyncio.run(serve(settings))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from gateway.mapping.loader import check

    root = Path(args.path) if args.path else PACKAGE_MAPPINGS
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"{root}: ok")
    return 0


def _cmd_emulate(args: argparse.Namespace) -> int:
    from gateway.emulator.app import run_emulator

    level = os.environ.get("GATEWAY_LOG_LEVEL", "info").lower()
    raw_port = os.environ.get("EMULATOR_PORT", "8090")
    problems = []
    if level not in ("debug", "info", "warning", "error"):
        problems.append("GATEWAY_LOG_LEVEL: must be one of debug, info, warning, error")
    if args.port is None and not (raw_port.isdigit() and int(raw_port) <= 65535):
        problems.append("EMULATOR_PORT: must be a port number (0-65535)")
    if problems:
        print("gradium-gateway: invalid configuration:\n" + "\n".join(problems), file=sys.stderr)
        return 2
    configure_logging(level)  # JSON lines, like `serve`
    host = args.host or os.environ.get("EMULATOR_HOST", "127.0.0.1")
    port = args.port if args.port is not None else int(raw_port)
    _install_uvloop()
    with contextlib.suppress(KeyboardInterrupt, web.GracefulExit):
        asyncio.run(run_emulator(host, port))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradium-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the gateway (on the built-in emulator when no Gradium key is set)")
    p.add_argument("--config", type=Path, default=None, help="YAML settings file (also GATEWAY_CONFIG)")
    p.add_argument("--host", default=None, help="listen address (GATEWAY_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="HTTP/WS port (GATEWAY_PORT, default 8080)")
    p.add_argument("--tls-port", type=int, default=None, help="HTTPS/WSS port (GATEWAY_TLS_PORT, default 8443)")
    p.set_defaults(func=_cmd_serve)
    c = sub.add_parser("check", help="validate mapping files; prints file:line: field: problem")
    c.add_argument("path", nargs="?", default=None, help="a mappings directory or one file")
    c.set_defaults(func=_cmd_check)
    e = sub.add_parser("emulate", help="run the Gradium emulator alone")
    e.add_argument("--host", default=None, help="listen address (EMULATOR_HOST, default 127.0.0.1)")
    e.add_argument("--port", type=int, default=None, help="port (EMULATOR_PORT, default 8090)")
    e.set_defaults(func=_cmd_emulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
