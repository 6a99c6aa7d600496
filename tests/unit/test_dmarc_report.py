"""DMARC aggregate reports (RFC 7489 §7.2) from recorded verdicts, and the CLI that prints them."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mailserver.checks.dmarc import DmarcRecord, DmarcResult
from mailserver.checks.dmarc_log import DmarcLog
from mailserver.checks.dmarc_report import reports
from mailserver.cli.main import main

DAY = dt.date(2026, 3, 2)
NOON = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC).timestamp()
RECORD = DmarcRecord("reject", rua=("mailto:d@example.com",))


def _log(tmp_path: Path) -> DmarcLog:
    log = DmarcLog(tmp_path / "dmarc")
    fail = DmarcResult("fail", "example.com", "reject", "reject", "example.com", record=RECORD,
                       record_domain="example.com")
    ok = DmarcResult("pass", "example.com", "reject", "none", "example.com", record=RECORD,
                     dkim_aligned=True, record_domain="example.com")
    for _ in range(2):
        log.record(when=NOON, source_ip="192.0.2.1", envelope_from="evil.example", result=fail,
                   disposition="reject", spf=("evil.example", "mfrom", "pass"), dkim=[])
    log.record(when=NOON, source_ip="192.0.2.9", envelope_from="example.com", result=ok,
               disposition="none", spf=("example.com", "mfrom", "fail"),
               dkim=[("example.com", "s1", "pass")])
    no_rua = DmarcResult("fail", "quiet.example", "reject", "reject", record=DmarcRecord("reject"))
    log.record(when=NOON, source_ip="192.0.2.1", envelope_from="", result=no_rua,
               disposition="reject", spf=("", "helo", "none"), dkim=[])
    return log


def test_rows_are_aggregated_per_policy_domain(tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert log.read(DAY - dt.timedelta(days=1)) == []
    out = reports(log.read(DAY), day=DAY, org_name="mx.example.test",
                  email="postmaster@mx.example.test")
    assert list(out) == ["example.com"]  # quiet.example has no rua=: never recorded
    root = ET.fromstring(out["example.com"].split("\n", 1)[1])
    assert root.findtext("policy_published/domain") == "example.com"
    assert root.findtext("policy_published/p") == "reject"
    begin = int(root.findtext("report_metadata/date_range/begin") or 0)
    assert dt.datetime.fromtimestamp(begin, dt.UTC).date() == DAY
    rows = {r.findtext("row/source_ip"): r for r in root.findall("record")}
    assert rows["192.0.2.1"].findtext("row/count") == "2"
    assert rows["192.0.2.1"].findtext("row/policy_evaluated/disposition") == "reject"
    assert rows["192.0.2.9"].findtext("row/policy_evaluated/dkim") == "pass"
    assert rows["192.0.2.9"].findtext("auth_results/dkim/selector") == "s1"
    assert rows["192.0.2.1"].findtext("auth_results/spf/domain") == "evil.example"


def test_cli_prints_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    _log(tmp_path)
    monkeypatch.delenv("MAILSERVER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no conf/mailserver.toml here: the built-in config
    assert main(["dmarc", "report", DAY.isoformat(), "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "<!-- aggregate report for example.com -->" in out and "<feedback>" in out
    assert main(["dmarc", "report", "yesterday", "--data-dir", str(tmp_path)]) == 1
