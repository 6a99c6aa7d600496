"""SMTP TLS Reporting (RFC 8460): recording outbound TLS results and the daily report.

Each outbound TLS attempt (one session with one MX address) is one JSON
line in ``<directory>/<YYYY-MM-DD>.jsonl`` by UTC day: the policy domain
(the recipient domain), the policy type (``sts``, ``tlsa`` or
``no-policy-found``, §4.4), the policy lines, the MX host and address, and
the result: ``success`` or a result type of §4.3 (``starttls-not-supported``,
``certificate-host-mismatch``, ``certificate-expired``,
``validation-failure``, ``sts-policy-fetch-error``, ``sts-policy-invalid``,
``sts-webpki-invalid``, ``tlsa-invalid``, ``dnssec-invalid``,
``dane-required``).  ``report(day)`` aggregates the lines into one report
per policy domain in the JSON schema of §4.4.

Like the DMARC log (``checks/dmarc_log.py``) these are files beside the
store, not LMDB records: one ``O_APPEND`` write per line (workers of a
multi-process daemon do not tear lines), not fsynced (a statistic; losing
the last lines in a crash costs nobody a message).  Sending the reports
(§3: ``rua`` of ``_smtp._tls.<domain>``) is ``queue/reporting.py``'s, with
``[outbound] tlsrpt_send``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: RFC 8460 §4.3 result types a failed session can have.
RESULT_TYPES = (
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
    "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
    "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
)


@dataclass(frozen=True, slots=True)
class TlsAttempt:
    """One session's TLS outcome.  ``result``: "success" or one of ``RESULT_TYPES``;
    ``policy_type``: "sts", "tlsa" or "no-policy-found" (RFC 8460 §4.4)."""

    policy_domain: str
    policy_type: str
    result: str
    mx_host: str = ""
    receiving_ip: str = ""
    policy_lines: tuple[str, ...] = ()
    mx_patterns: tuple[str, ...] = ()


class TlsReportLog:
    """Appends ``TlsAttempt`` lines under ``directory`` (made on first write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, day: dt.date) -> Path:
        """The file of ``day``'s attempts (JSON lines, UTC days)."""
        return self.directory / f"{day.isoformat()}.jsonl"

    def record(self, attempt: TlsAttempt, when: float) -> None:
        """Append ``attempt`` made at ``when`` (POSIX seconds).  Raises OSError."""
        line = json.dumps({
            "time": int(when), "domain": attempt.policy_domain.lower(),
            "type": attempt.policy_type, "result": attempt.result, "mx": attempt.mx_host,
            "ip": attempt.receiving_ip, "policy": list(attempt.policy_lines),
            "patterns": list(attempt.mx_patterns),
        }, separators=(",", ":")) + "\n"
        day = dt.datetime.fromtimestamp(when, dt.UTC).date()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path_for(day), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def read(self, day: dt.date) -> list[dict[str, Any]]:
        """The attempts recorded on ``day`` (UTC), in order; [] when none."""
        try:
            text = self.path_for(day).read_text("utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line after a crash
        return out


def reports(lines: Sequence[Mapping[str, Any]], *, day: dt.date, org_name: str,
            contact: str) -> dict[str, dict[str, Any]]:
    """One RFC 8460 §4.4 report per policy domain of ``lines`` (``TlsReportLog.read``):
    ``{domain: report}``, the day's 24 hours as its date range."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    end = start + dt.timedelta(days=1) - dt.timedelta(seconds=1)
    by_domain: dict[str, list[Mapping[str, Any]]] = {}
    for ln in lines:
        by_domain.setdefault(str(ln["domain"]), []).append(ln)
    out: dict[str, dict[str, Any]] = {}
    for domain, items in sorted(by_domain.items()):
        # One policy entry per (type, policy text) seen that day.
        groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[Mapping[str, Any]]] = {}
        for ln in items:
            key = (str(ln["type"]), tuple(ln.get("policy", ())), tuple(ln.get("patterns", ())))
            groups.setdefault(key, []).append(ln)
        policies = []
        for (ptype, text, patterns), group in groups.items():
            ok = sum(1 for g in group if g["result"] == "success")
            failures = Counter((g["result"], g.get("mx", ""), g.get("ip", ""))
                               for g in group if g["result"] != "success")
            policy: dict[str, Any] = {"policy-type": ptype, "policy-domain": domain}
            if text:
                policy["policy-string"] = list(text)
            if patterns:
                policy["mx-host"] = list(patterns)
            policies.append({
                "policy": policy,
                "summary": {"total-successful-session-count": ok,
                            "total-failure-session-count": len(group) - ok},
                "failure-details": [
                    {"result-type": rt, "receiving-mx-hostname": mx, "receiving-ip": ip,
                     "failed-session-count": n}
                    for (rt, mx, ip), n in sorted(failures.items())
                ],
            })
        out[domain] = {
            "organization-name": org_name,
            "date-range": {"start-datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "end-datetime": end.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "contact-info": contact,
            "report-id": f"{day.isoformat()}.{domain}@{org_name}",
            "policies": policies,
        }
    return out
