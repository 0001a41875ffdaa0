"""`python bench/shadow_session_cost.py --tool cpu` (README, "Benchmark"; bench/README.md): a gateway per shadow
rate against a stand-in vendor, and every shadowed session's pair stored before the counts are read."""

from __future__ import annotations

from pathlib import Path

from tests.bench_scripts import run


def test_shadowed_sessions_are_counted_with_their_pairs(tmp_path: Path) -> None:
    r = run("shadow_session_cost.py", "--tool", "cpu", "--sessions", "2", "--warmup", "1", "--annotate", str(tmp_path))
    rows = {line.split(":")[0]: line for line in r.stdout.splitlines() if line.startswith("rate")}
    assert set(rows) == {"rate0", "rate1"}, r.stdout
    assert "pairs {}" in rows["rate0"] and "pairs {'completed': 2}" in rows["rate1"], r.stdout
