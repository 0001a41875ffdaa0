"""`gradium-gateway shadow report|export|prune` and the README's shadow examples, run as written."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.traffic.store import connect, load_rows, write_rows

from .shadow_rows import fill_store, make_rows

README = Path(__file__).resolve().parents[2] / "README.md"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIUM_", "GATEWAY_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _readme_block(after: str) -> list[str]:
    text = README.read_text()
    start = text.index(after)
    m = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert m, f"no sh block after {after!r}"
    return [line for line in m.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("shadow")
    rows = make_rows(now=time.time())
    fill_store(d / "gateway-shadow.db", rows)
    fill_store(d / "shadow-a.db", rows[:30])
    fill_store(d / "shadow-b.db", rows[20:])
    with open(d / "gateway.log", "w") as f:
        f.write('{"event": "gateway.listening"}\n')
        for row, _ in rows[:10]:
            f.write(json.dumps({"event": "shadow.comparison", "level": "info", **row}) + "\n")
    return d


def _run(cmd: str, cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120,
                          **kw)  # type: ignore[call-overload]


def _main(argv: list[str], cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
          ) -> tuple[int, str, str]:
    """The CLI in-process (subprocesses cost seconds each on a loaded machine; the README test uses them)."""
    from gateway.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_readme_report_commands(workdir: Path) -> None:
    commands = _readme_block("<!-- shadow-report-commands")
    assert len(commands) == 8
    out = {}
    for cmd in commands:
        r = _run(cmd, workdir)
        assert r.returncode == 0, (cmd, r.stderr)
        out[cmd] = r.stdout
    assert "deepgram listen_live (stt) gradium -> legacy" in out[commands[0]]
    report = json.loads((workdir / "shadow.json").read_text())
    assert report["pairs"] == 84 and {g["route"] for g in report["groups"]} == {"listen_live", "tts_ws"}
    lines = list(csv.DictReader(io.StringIO(out[commands[2]])))
    assert [line["provider"] for line in lines] == ["deepgram"]
    html = (workdir / "shadow.html").read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html and "<script" not in html
    assert "84 pairs" in out[commands[4]].splitlines()[0] or "84 pairs" in out[commands[4]]
    assert "10 pairs" in out[commands[5]]
    exported = [json.loads(x) for x in (workdir / "pairs.jsonl").read_text().splitlines()]
    assert len(exported) == 84 and all(e["event"] == "shadow.comparison" for e in exported)
    assert "deleted 0 pairs" in out[commands[7]]


def test_export_reads_back_as_a_log(workdir: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rc, _, err = _main(["shadow", "export", "--db", "gateway-shadow.db", "--out", "again.jsonl"], workdir, capsys,
                       monkeypatch)
    assert rc == 0, err
    rc, out, err = _main(["shadow", "report", "--jsonl", "again.jsonl", "--format", "json"], workdir, capsys,
                         monkeypatch)
    assert rc == 0, err
    assert json.loads(out)["pairs"] == 84


def test_prune_deletes_old_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rows = make_rows(now=time.time() - 20 * 86400, days=1) + make_rows(now=time.time(), days=1)
    conn = connect(tmp_path / "old.db")  # written directly: the store's own writer would prune on its own
    write_rows(conn, [r for r, _ in rows], [u for _, us in rows for u in us])
    conn.close()
    rc, out, _ = _main(["shadow", "prune", "--db", "old.db", "--days", "14"], tmp_path, capsys, monkeypatch)
    assert rc == 0 and "old.db: deleted 21 pairs older than 14 days" in out
    assert len(load_rows([str(tmp_path / "old.db")])) == 21


@pytest.mark.parametrize(("cmd", "message"), [
    ("gradium-gateway shadow report --db missing.db", "no such store: missing.db"),
    ("gradium-gateway shadow report --since tomorrow", "--since 'tomorrow'"),
    ("gradium-gateway shadow report --db not-a-store.db", "not a shadow store"),
    ("gradium-gateway shadow prune --db missing.db --days 1", "no such store"),
    ("gradium-gateway shadow report --threshold speed=1", "metric is one of"),
    ("gradium-gateway shadow report --threshold wer=lots", "expected METRIC=ABSOLUTE"),
])
def test_errors_are_one_line_and_exit_2(tmp_path: Path, cmd: str, message: str, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex
    import sqlite3

    sqlite3.connect(tmp_path / "not-a-store.db").execute("CREATE TABLE t (x)")
    fill_store(tmp_path / "gateway-shadow.db", [])
    rc, _, err = _main(shlex.split(cmd)[1:], tmp_path, capsys, monkeypatch)
    assert rc == 2 and message in err and "Traceback" not in err, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_admin_page_commands(workdir: Path) -> None:
    hash_cmd, curl_cmd = _readme_block("token_sha256: <hex sha256 of the admin token>")
    token = "s3cret-admin-token"
    env = {**_env(), "ADMIN_TOKEN": token}
    digest = subprocess.run(["bash", "-c", hash_cmd], env=env, capture_output=True, text=True, check=True).stdout
    assert digest.strip() == hashlib.sha256(token.encode()).hexdigest()
    cfg = workdir / "admin.yaml"
    cfg.write_text(f"admin:\n  token_sha256: {digest.strip()}\n")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), "--port", str(port)],
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)
        page = workdir / "shadow.html"
        page.unlink(missing_ok=True)
        r = subprocess.run(["bash", "-c", curl_cmd.replace("127.0.0.1:8080", f"127.0.0.1:{port}")], cwd=workdir,
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        html = page.read_text()
        assert "Shadow report" in html and "84 pairs" in html
        denied = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                 f"http://127.0.0.1:{port}/_gateway/shadow"], capture_output=True, text=True)
        assert denied.stdout == "401"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert shutil.which("curl")


def test_thresholds_change_verdicts(workdir: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def wer_flag(*extra: str) -> bool:
        rc, out, err = _main(["shadow", "report", "--format", "json", *extra], workdir, capsys, monkeypatch)
        assert rc == 0, err
        stt = next(g for g in json.loads(out)["groups"] if g["kind"] == "stt")
        return next(v for v in stt["verdicts"] if v["metric"] == "wer")["flagged"]

    assert wer_flag() and not wer_flag("--threshold", "wer=0.5/0.5")
