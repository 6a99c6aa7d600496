"""MTA-STS records and policies (RFC 8461 §3.1, §3.2, §4.1), TLS-RPT reports (RFC 8460 §4.4)."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailserver.cli.main import main
from mailserver.queue.connect import tls_result
from mailserver.queue.mtasts import MAX_AGE_LIMIT, PolicyError, parse_policy, parse_txt
from mailserver.queue.tlsrpt import TlsAttempt, TlsReportLog, reports

POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n" \
         "max_age: 86400\r\n"


@pytest.mark.parametrize(("records", "want"), [
    (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
    (["v=STSv1;id=abc"], "abc"),
    (["v=spf1 -all", "v=STSv1; id=x1"], "x1"),
    (["v=STSv1; id=a", "v=STSv1; id=b"], None),  # two records: none (§3.1)
    (["v=STSv1; id=bad-char"], None),
    (["v=STSv1; id=" + "a" * 33], None),
    (["v=STSv1;"], None),
    (["v=STSv10; id=a"], None),
    ([], None),
])
def test_txt_record(records: list[str], want: str | None) -> None:
    assert parse_txt(records) == want


def test_policy_whole_and_lf_only() -> None:
    for text in (POLICY, POLICY.replace("\r\n", "\n"), POLICY + "extension: ignored\n"):
        p = parse_policy(text)
        assert (p.mode, p.max_age, p.mx) == ("enforce", 86400, ("mail.example.com",
                                                                 "*.example.net"))
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 0\n").mx == ()


@pytest.mark.parametrize("text", [
    POLICY.replace("STSv1", "STSv2"),
    POLICY.replace("enforce", "strict"),
    POLICY.replace("86400", f"{MAX_AGE_LIMIT + 1}"),
    POLICY.replace("86400", "-1"),
    "version: STSv1\nmode: enforce\nmax_age: 10\n",  # no mx
    POLICY + "garbage line\n",
    POLICY + "mx: bad..name\n",
    "",
])
def test_policy_invalid(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


@pytest.mark.parametrize(("host", "ok"), [
    ("mail.example.com", True), ("MAIL.example.com.", True), ("x.example.net", True),
    ("example.net", False), ("a.b.example.net", False), ("other.example.com", False),
])
def test_mx_matching(host: str, ok: bool) -> None:
    assert parse_policy(POLICY).matches(host) is ok


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(st.lists(_label, min_size=1, max_size=4), _label, st.integers(0, MAX_AGE_LIMIT),
       st.sampled_from(["enforce", "testing"]), st.sampled_from(["\n", "\r\n"]))
def test_policy_roundtrip_and_wildcards(labels: list[str], extra: str, age: int, mode: str,
                                        eol: str) -> None:
    name = ".".join(labels)
    text = eol.join(["version: STSv1", f"mode: {mode}", f"mx: *.{name}", f"max_age: {age}"])
    p = parse_policy(text)
    assert (p.mode, p.max_age) == (mode, age)
    assert p.matches(f"{extra}.{name}") and not p.matches(name)
    assert not p.matches(f"{extra}.{extra}.{name}")


@given(st.text(max_size=200))
def test_policy_parser_never_crashes(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyError:
        pass
    parse_txt([text])


def test_tls_result_from_certificate_errors() -> None:
    def err(code: int) -> ssl.SSLCertVerificationError:
        e = ssl.SSLCertVerificationError("x")
        e.verify_code = code
        return e
    assert tls_result(err(10)) == "certificate-expired"
    assert tls_result(err(62)) == "certificate-host-mismatch"
    assert tls_result(err(19)) == "certificate-not-trusted"
    wrapped = OSError("handshake")
    wrapped.__cause__ = err(62)
    assert tls_result(wrapped) == "certificate-host-mismatch"
    assert tls_result(OSError("reset")) == "validation-failure"


DAY = dt.date(2026, 12, 5)
WHEN = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC).timestamp()


def _log(tmp_path: Path) -> TlsReportLog:
    log = TlsReportLog(tmp_path / "tlsrpt")
    p = parse_policy(POLICY)
    for result in ("success", "success", "certificate-expired"):
        log.record(TlsAttempt("example.com", "sts", result, "mail.example.com", "192.0.2.1",
                              tuple(p.lines()), p.mx), WHEN)
    log.record(TlsAttempt("other.test", "no-policy-found", "starttls-not-supported",
                          "mx.other.test", "192.0.2.2"), WHEN)
    return log


def test_report_schema(tmp_path: Path) -> None:
    out = reports(_log(tmp_path).read(DAY), day=DAY, org_name="mail.test",
                  contact="postmaster@mail.test")
    assert set(out) == {"example.com", "other.test"}
    rep = out["example.com"]
    assert rep["date-range"] == {"start-datetime": "2026-12-05T00:00:00Z",
                                 "end-datetime": "2026-12-05T23:59:59Z"}
    (pol,) = rep["policies"]
    assert pol["policy"]["policy-type"] == "sts"
    assert pol["policy"]["policy-string"][0] == "version: STSv1"
    assert pol["policy"]["mx-host"] == ["mail.example.com", "*.example.net"]
    assert pol["summary"] == {"total-successful-session-count": 2,
                              "total-failure-session-count": 1}
    assert pol["failure-details"] == [{
        "result-type": "certificate-expired", "receiving-mx-hostname": "mail.example.com",
        "receiving-ip": "192.0.2.1", "failed-session-count": 1}]
    assert out["other.test"]["policies"][0]["policy"] == {
        "policy-type": "no-policy-found", "policy-domain": "other.test"}


def test_cli_prints_the_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    _log(tmp_path)
    monkeypatch.chdir(tmp_path)  # no conf/mailserver.toml here: the built-in config
    assert main(["tlsrpt", "report", DAY.isoformat(), "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(ln)["policies"][0]["policy"]["policy-domain"] for ln in lines] == [
        "example.com", "other.test"]
    assert main(["tlsrpt", "report", "nope", "--data-dir", str(tmp_path)]) == 1
