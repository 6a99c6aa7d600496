"""Recording DMARC verdicts for aggregate reports (RFC 7489 §7.2).

Only domains that ask for reports (a ``rua=`` tag) are recorded: one JSON
line per message and From domain, in ``<dir>/<YYYY-MM-DD>.jsonl`` by UTC day
of arrival, with what an aggregate report's ``<record>`` needs (§7.2.1.1,
Appendix C): the source IP, the published policy, the disposition applied,
the aligned results and the raw SPF/DKIM results.  Reports aggregate these
lines by reporting domain and day.

Writes happen on the checks' worker thread, never on the event loop.  Each
line is one ``write`` to a file opened with ``O_APPEND``, so workers of a
multi-process daemon append without tearing lines.  Not fsynced: a report is
a statistic, and losing the last lines in a crash costs nothing the sender
relies on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path

from mailserver.checks.dmarc import DmarcResult


class DmarcLog:
    """Appends verdicts under ``directory`` (made on first write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, day: dt.date) -> Path:
        """The file of ``day``'s verdicts (JSON lines, UTC days)."""
        return self.directory / f"{day.isoformat()}.jsonl"

    def record(self, *, when: float, source_ip: str, envelope_from: str, result: DmarcResult,
               disposition: str, spf: tuple[str, str, str],
               dkim: Sequence[tuple[str, str, str]]) -> None:
        """One message's verdict for ``result.from_domain``: ``when`` POSIX
        seconds; ``spf`` (domain, scope "mfrom"/"helo", result); ``dkim``
        (domain, selector, result) per signature.  Raises ``OSError``."""
        rec = result.record
        if rec is None or not rec.rua:
            return
        line = json.dumps({
            "time": int(when),
            "source_ip": source_ip,
            "header_from": result.from_domain,
            "envelope_from": envelope_from,
            "policy_published": {
                "domain": result.record_domain or result.from_domain,
                "adkim": rec.adkim, "aspf": rec.aspf, "p": rec.policy,
                "sp": rec.subdomain_policy or rec.policy, "pct": rec.percent,
                "rua": list(rec.rua),
            },
            "disposition": disposition,
            "dkim_aligned": "pass" if result.dkim_aligned else "fail",
            "spf_aligned": "pass" if result.spf_aligned else "fail",
            "spf": {"domain": spf[0], "scope": spf[1], "result": spf[2]},
            "dkim": [{"domain": d, "selector": s, "result": r} for d, s, r in dkim],
        }, separators=(",", ":")) + "\n"
        day = dt.datetime.fromtimestamp(when, dt.UTC).date()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path_for(day), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def read(self, day: dt.date) -> list[dict[str, object]]:
        """The verdicts recorded on ``day`` (UTC), in order; [] when none."""
        try:
            text = self.path_for(day).read_text("utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]
