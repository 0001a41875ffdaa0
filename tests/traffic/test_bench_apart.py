"""`--apart` in the traffic benches (bench/README.md, "Shadow tail"): the gateways under test on half the
machine's cores, the client, the emulators and the stand-in vendor on the other half, as Linux reports
each process's cores while the run is on."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.bench_scripts import run


def halves() -> tuple[list[int], list[int]]:
    """What `--apart` should give: the first half of this machine's cores to the gateways, the rest to the
    client, the emulators and the vendor."""
    cpus = sorted(os.sched_getaffinity(0))
    assert len(cpus) >= 2, "the suite runs on at least 2 cores (CI: 2)"
    return cpus[: len(cpus) // 2], cpus[len(cpus) // 2 :]


def test_the_gateways_and_what_stands_for_other_machines_run_on_separate_cores(tmp_path: Path) -> None:
    r = run("shadow_window_cost.py", "--apart", "--sessions", "2", "--warmup", "1", "--workers", "1",
            "--keep", str(tmp_path))
    start = r.stdout.index("{")
    results, _ = json.JSONDecoder().raw_decode(r.stdout[start:])
    placement = results["placement"]
    gateways, rest = halves()
    assert placement["rate0"] == placement["rate1"] == gateways, placement
    for name in ("client", "emulator", "standin-vendor"):
        assert placement[name] == rest, placement
    for rate in ("rate0", "rate1"):
        assert results[rate]["n"] == 2, results[rate]


def test_run_py_apart_places_the_gateway_and_the_bare_proxy_apart_from_the_vendor(tmp_path: Path) -> None:
    r = run("run.py", "--passthrough", "--quick", "--apart", "--json", str(tmp_path / "x.json"))
    out = json.loads((tmp_path / "traffic.json").read_text())
    gateways, rest = halves()
    placement = out["placement"]
    assert placement["passthrough"] == placement["bare-proxy"] == gateways, placement
    assert placement["client"] == placement["standin-vendor"] == placement["emulator"] == rest, placement
    assert out["passthrough_tts_ws"]["errors"] == {"direct": 0, "passthrough": 0}
    assert f"passthrough {gateways}" in r.stdout
