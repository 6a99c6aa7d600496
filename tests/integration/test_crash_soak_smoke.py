"""Smoke run of the crash soak (bench/crash_soak.py) so it cannot rot: two
seconds of load, a kill -9 or two, the checks after each restart.  The real
soak runs by hand (bench/RESULTS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_crash_soak_runs_and_finds_nothing_missing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "crash_soak.py"), "--seconds", "2",
         "--workers", "1", "--seed", "7", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "violations                       0" in proc.stdout, proc.stdout
    assert out.is_file()
