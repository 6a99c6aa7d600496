"""The shipped alert rules (``conf/prometheus-alerts.yml``) pass ``promtool check
rules``.  promtool comes from Debian's prometheus package, which
``./scripts/test`` installs when it is missing: a missing promtool fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

RULES = Path(__file__).resolve().parents[2] / "conf" / "prometheus-alerts.yml"


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: apt-get install prometheus (./scripts/test does)"
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
