"""`gradium-gateway serve | check | emulate | shadow`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway.config import PACKAGE_MAPPINGS, Settings, load_settings
from gateway.observability import configure_logging
from gateway.workers import default_workers, run_workers, worker_fds, worker_sockets
from gateway.yamlfile import ConfigFileError

if TYPE_CHECKING:
    from gateway.emulator.settings import EmulatorSettings

# This module is all that `serve --workers N`'s supervisor imports: the app (aiohttp's server, the codecs,
# numpy, the emulator) is imported by the workers only, so the supervisor stays a small process (~40 MB
# instead of a worker's ~110 MB). `_CHECK_ONLY_ENV`: a child that builds the app, to check it, and exits.
_CHECK_ONLY_ENV = "GATEWAY_CHECK_ONLY"
CHECK_TIMEOUT_S = 120.0  # the check takes about a second (imports, one app built)

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


def _warn_emulator(settings: Settings) -> None:
    if settings.uses_emulator:
        # First line on purpose: nobody should mistake the emulator for Gradium.
        log.warning(
            "gateway.using_builtin_emulator",
            message="No Gradium key or URL configured (GRADIUM_API_KEY / GRADIUM_BASE_URL): serving against the "
            "built-in Gradium EMULATOR. Audio is synthetic test tones, not speech.",
        )


async def serve(
    settings: Settings, stop: asyncio.Event | None = None, socks: list[socket.socket] | None = None
) -> None:
    """Serve until `stop` (or a signal); `socks`: listening sockets inherited from `serve --workers`."""
    from aiohttp import web

    from gateway.app import create_app
    from gateway.heap import collect_less_often, freeze_startup_heap
    from gateway.session.lifecycle import LIVE

    _warn_emulator(settings)
    for event, message in startup_warnings(settings):
        log.warning(event, message=message)
    app = create_app(settings)
    # Our own signal handlers, not aiohttp's: its GracefulExit escapes asyncio.run, which then cancels the
    # request handlers instead of letting runner.cleanup() drain them.
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests), Windows
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx = None
    if settings.tls_enabled:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    sites: list[web.BaseSite]
    if socks:
        sites = [web.SockSite(runner, socks[0])]
        if ctx is not None and len(socks) > 1:
            sites.append(web.SockSite(runner, socks[1], ssl_context=ctx))
    else:
        sites = [web.TCPSite(runner, settings.host, settings.port, reuse_address=True)]
        if ctx is not None:
            sites.append(web.TCPSite(runner, settings.host, settings.tls_port, ssl_context=ctx, reuse_address=True))
    for site in sites:
        await site.start()
    frozen = freeze_startup_heap()
    collect_less_often()
    log.info(
        "gateway.listening",
        frozen_objects=frozen,
        http=f"http://{settings.host}:{settings.port}",
        https=f"https://{settings.host}:{settings.tls_port}" if settings.tls_enabled else None,
        providers=sorted(p.stem for p in Path(settings.mappings_dir).glob("*.yaml")),
    )
    try:
        await stop.wait()
        log.info("gateway.draining", message="stopped accepting; waiting for running requests",
                 drain_s=settings.drain_s)
        # /readyz turns 503 now; live sockets are told the dialect's way and finish what they owe
        await app[LIVE].drain(settings.drain_s)
    finally:
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _cmd_serve(args: argparse.Namespace) -> int:
    if args.workers is not None and not 1 <= args.workers <= 256:
        print("gradium-gateway serve: --workers must be between 1 and 256", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config, host=args.host, port=args.port, tls_port=args.tls_port)
    except ConfigFileError as exc:
        print(f"gradium-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    fds = worker_fds()
    count = args.workers or settings.workers or default_workers()
    check_only = bool(os.environ.get(_CHECK_ONLY_ENV))
    if fds is None and count > 1 and not check_only:
        # fail fast on mapping errors, before binding ports: checked by a child, so that this process,
        # the supervisor, never imports the app
        try:
            checked = subprocess.run([sys.executable, "-m", "gateway.cli", *_serve_argv(args)],
                                     env={**os.environ, _CHECK_ONLY_ENV: "1"}, check=False, timeout=CHECK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"gradium-gateway: checking the mappings took over {CHECK_TIMEOUT_S:.0f} s", file=sys.stderr)
            return 1
        if checked.returncode:
            return checked.returncode
        return _supervise(args, settings, count)
    from aiohttp import web

    try:
        from gateway.app import create_app

        create_app(settings)  # fail fast on mapping errors, before binding ports
    except ConfigFileError as exc:
        print(f"gradium-gateway: invalid mappings:\n{exc}", file=sys.stderr)
        return 2
    if check_only:
        return 0
    _install_uvloop()
    socks = worker_sockets(fds) if fds else None
    # SIGTERM (docker stop) arrives as aiohttp's GracefulExit: a clean shutdown, not a failure.
    with contextlib.suppress(KeyboardInterrupt, web.GracefulExit):
        asyncio.run(serve(settings, socks=socks))
    return 0


def _serve_argv(args: argparse.Namespace) -> list[str]:
    """`serve` with the options given (a worker's command line, less `--workers`)."""
    argv = ["serve"]
    for flag, value in (("--config", args.config), ("--host", args.host), ("--port", args.port),
                        ("--tls-port", args.tls_port)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _supervise(args: argparse.Namespace, settings: Settings, count: int) -> int:
    _warn_emulator(settings)
    if settings.state.redis_url is None:
        log.warning(
            "gateway.workers_without_shared_state",
            workers=count,
            message="Several workers and no state.redis_url (GATEWAY_REDIS_URL): single-use tokens and counters "
            "are per worker, so single-use tokens are usable once per worker and budgets multiply.",
        )
    if settings.auth.token_secret is None:
        # Every worker must verify every other worker's tokens: one random secret for this start.
        os.environ["GATEWAY_TOKEN_SECRET"] = secrets.token_urlsafe(32)
        log.warning(
            "auth.token_secret_unset",
            message="GATEWAY_TOKEN_SECRET is not set: gateway tokens are signed with a random secret shared by "
            "this start's workers, so they stop working on restart and on any other replica",
        )
    ports = [settings.port] + ([settings.tls_port] if settings.tls_enabled else [])
    return run_workers(_serve_argv(args), settings.host, ports, count)


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


def emulator_settings(args: argparse.Namespace) -> EmulatorSettings:
    from gateway.emulator.settings import EmulatorSettings

    return EmulatorSettings(
        tts_realtime_factor=1.0 / args.tts_speed if args.tts_speed else 0.0,
        tts_first_audio_delay_s=args.first_audio_delay_ms / 1e3,
        stt_replay=args.stt_replay,
    )


def _cmd_emulate(args: argparse.Namespace) -> int:
    from aiohttp import web

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
    if args.tts_speed < 0 or args.first_audio_delay_ms < 0:
        print("gradium-gateway emulate: --tts-speed and --first-audio-delay-ms must be >= 0", file=sys.stderr)
        return 2
    settings = emulator_settings(args)
    _install_uvloop()
    from gateway.heap import freeze_startup_heap

    freeze_startup_heap()  # the emulator stands in for Gradium under load too: no collector pauses
    with contextlib.suppress(KeyboardInterrupt, web.GracefulExit):
        asyncio.run(run_emulator(host, port, settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradium-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the gateway (on the built-in emulator when no Gradium key is set)")
    p.add_argument("--config", type=Path, default=None, help="YAML settings file (also GATEWAY_CONFIG)")
    p.add_argument("--host", default=None, help="listen address (GATEWAY_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="HTTP/WS port (GATEWAY_PORT, default 8080)")
    p.add_argument("--tls-port", type=int, default=None, help="HTTPS/WSS port (GATEWAY_TLS_PORT, default 8443)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes sharing the ports (GATEWAY_WORKERS, default: the number of CPU cores; 1: no supervisor)",
    )
    p.set_defaults(func=_cmd_serve)
    c = sub.add_parser("check", help="validate mapping files; prints file:line: field: problem")
    c.add_argument("path", nargs="?", default=None, help="a mappings directory or one file")
    c.set_defaults(func=_cmd_check)
    e = sub.add_parser("emulate", help="run the Gradium emulator alone")
    e.add_argument("--host", default=None, help="listen address (EMULATOR_HOST, default 127.0.0.1)")
    e.add_argument("--port", type=int, default=None, help="port (EMULATOR_PORT, default 8090)")
    e.add_argument(
        "--first-audio-delay-ms",
        type=float,
        default=0.0,
        help="hold each TTS request's first audio this long (per request, pooled sockets included)",
    )
    e.add_argument(
        "--tts-speed",
        type=float,
        default=0.0,
        help="pace TTS audio at this many times real time (5: 1 s of audio every 0.2 s); 0: unpaced",
    )
    e.add_argument(
        "--stt-replay",
        action="store_true",
        help="STT answers audio already decoded from a cache instead of decoding again (cheap, for load tests)",
    )
    e.set_defaults(func=_cmd_emulate)
    from gateway.traffic.report_cli import add_parser as add_shadow_parser

    add_shadow_parser(sub)  # `shadow report | export | prune`
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
