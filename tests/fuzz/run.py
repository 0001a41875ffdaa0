"""The long fuzz run: `python -m tests.fuzz.run --seed 1 --http 3000 --ws 1000` (per dialect) starts an
emulator and a gateway on loopback, runs the seeded cases and prints the figures as JSON (and the first
findings of each class). Exit status 1 when any defect class is non-empty."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import trustme

from tests.conftest import Emulator, gateway_settings, run_app, start_gateway
from tests.fuzz.runner import fuzz


async def main(args: argparse.Namespace) -> int:
    from gateway.emulator.app import create_emulator_app
    from gateway.observability import configure_logging

    configure_logging("error", open(args.log, "a") if args.log else sys.stderr)  # noqa: SIM115

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    with tempfile.TemporaryDirectory() as d:
        files = {"cert": Path(d) / "cert.pem", "key": Path(d) / "key.pem"}
        cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
        cert.private_key_pem.write_to_path(str(files["key"]))
        emu_app = create_emulator_app()
        async with run_app(emu_app) as (port, _):
            emulator = Emulator(emu_app, f"http://127.0.0.1:{port}/api")
            async with start_gateway(gateway_settings(emulator, files), emulator) as gw:
                found = await fuzz(gw, args.seed, args.http, args.ws, args.concurrency, args.deadline)
    out = found.summary()
    out["seed"] = args.seed
    print(json.dumps(out, indent=2))
    for name in ("server_errors", "hangs", "unshaped", "echoed_key", "ws_internal", "ws_text_refused"):
        items = getattr(found, name)
        if items:
            print(f"\n{name} ({len(items)}):", *items[: args.show], sep="\n  ")
    return 1 if found.defects or found.sockets_left_open else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--http", type=int, default=3000, help="HTTP cases per dialect")
    p.add_argument("--ws", type=int, default=1000, help="WebSocket sessions per dialect")
    p.add_argument("--concurrency", type=int, default=24)
    p.add_argument("--deadline", type=float, default=30.0, help="seconds before a request counts as a hang")
    p.add_argument("--log", default=None, help="append the gateway's error log lines here (default stderr)")
    p.add_argument("--show", type=int, default=10, help="findings shown per class")
    sys.exit(asyncio.run(main(p.parse_args())))
