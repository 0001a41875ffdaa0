"""`python bench/run.py --passthrough --quick` (README, "Benchmark"; bench/README.md, REST passthrough cost):
the stand-in vendor, a weight-0 gateway and the bare aiohttp proxy as processes of their own, sessions
interleaved; the summary reads the gateway's added first audio next to the bare proxy's."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench_scripts import run


def test_passthrough_bench_times_gateway_and_bare_proxy(tmp_path: Path) -> None:
    r = run("run.py", "--passthrough", "--quick", "--workers", "1", "--json", str(tmp_path / "x.json"))
    out = json.loads((tmp_path / "traffic.json").read_text())
    rest = out["passthrough_tts_rest"]
    assert rest["errors"] == {"direct": 0, "passthrough": 0, "bare_proxy": 0}
    assert rest["passthrough"]["p50"] > 0 and rest["bare_proxy"]["p50"] > 0
    assert isinstance(rest["added_p50_ms"], float) and isinstance(rest["bare_proxy_added_p50_ms"], float)
    assert out["passthrough_tts_ws"]["errors"] == {"direct": 0, "passthrough": 0}
    assert "a bare aiohttp proxy adds" in r.stdout
