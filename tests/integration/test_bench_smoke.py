"""Smoke test of the benchmark harness (bench/run.py) so it cannot rot.

Runs every part against our server only (no Postfix/Dovecot), with tiny
counts, and checks that each part produced figures.  It asserts nothing about
speed: figures on a shared test machine are noise.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / ".." / "shared" / "corpus"


def test_harness_runs_every_part_quick(tmp_path: Path) -> None:
    assert (CORPUS / "messages").is_dir(), f"corpus missing at {CORPUS}"
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--no-reference",
         "--parts", "1,2,3,4,5,6,7", "--rounds", "1", "--idle-conns", "20",
         "--store-messages", "200", "--mix-seconds", "1", "--storm-seconds", "0.3",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=100,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["header"]["cores"] >= 1
    figures = [f for f in data["figures"] if f.get("note") != "text"]
    for part in ("[1]", "[2]", "[3]", "[4]", "[5]", "[6]", "[7]"):
        mine = [f for f in figures if f["name"].startswith(part)]
        assert mine, f"no figures for part {part}"
        assert all(f["reference"] is None for f in mine)
        assert all(isinstance(f["ours"], float | int) and not math.isnan(f["ours"])
                   for f in mine), mine
    # Every line the harness printed for a figure is in the JSON too.
    assert sum(line.startswith("[") for line in proc.stdout.splitlines()) == len(data["figures"])
