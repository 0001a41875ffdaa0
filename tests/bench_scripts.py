"""The bench's scripts imported by the tests that run them as documented (bench/ is not a package)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str) -> ModuleType:
    """`bench/<name>.py` as module `bench_<name>`, with bench/ importable for its own `import paths` etc."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


def run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python bench/<script> ARGS...` from the checkout's root, as the README shows it; fails the test, with
    the end of its stderr, when it does not exit 0."""
    r = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                       timeout=timeout, cwd=BENCH.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    return r
