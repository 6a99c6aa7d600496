"""Sending the daily DMARC (RFC 7489 §7.2) and TLS-RPT (RFC 8460 §5) reports.

The reports go through a real outbound queue to a loopback receiver (mail)
and a loopback HTTPS server (TLS-RPT's ``https:`` rua); the published
records come from the test's DNS server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import gzip
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from support.https import loopback_https
from support.outbound import OutboundEnv, outbound_env
from support.server import DOMAIN, make_config

from mailserver.app import App, resolver_for
from mailserver.checks.dmarc import DmarcRecord, DmarcResult
from mailserver.checks.dmarc_log import DmarcLog
from mailserver.dkim.keys import write_key
from mailserver.queue.reporting import (
    Destination,
    ReportSender,
    build_tlsrpt,
    parse_uris,
    report_message,
    tlsrpt_uris,
)
from mailserver.queue.tlsrpt import TlsAttempt, TlsReportLog

DAY = dt.date(2026, 3, 2)
NOON = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC).timestamp()
NEXT_DAY = NOON + 86400
SENDER = "postmaster@example.test"


def test_rua_uris() -> None:
    assert parse_uris("mailto:a@x.test!10m, https://r.test/p ,ftp://x, mailto:bad") == [
        Destination("mailto", "a@x.test", 10 << 20), Destination("https", "https://r.test/p")]
    assert parse_uris("mailto:a@x.test!big") == []
    assert parse_uris("mailto:a@x.test?subject=x!500") == [Destination("mailto", "a@x.test", 500)]
    # RFC 8460 §3: exactly one v=TLSRPTv1 record counts.
    assert tlsrpt_uris(["v=TLSRPTv1; rua=mailto:t@x.test"]) == [Destination("mailto", "t@x.test")]
    assert tlsrpt_uris(["v=TLSRPTv1; rua=mailto:a@x.test", "v=TLSRPTv1; rua=mailto:b@x.test"]) == []
    assert tlsrpt_uris(["v=spf1 -all"]) == []


@given(st.text(max_size=200))
def test_rua_parser_never_raises(value: str) -> None:
    for d in parse_uris(value):
        assert d.scheme in ("mailto", "https") and " " not in d.target


def _tls_log(directory: Path) -> TlsReportLog:
    log = TlsReportLog(directory)
    policy = ("version: STSv1", "mode: enforce")
    log.record(TlsAttempt("dest.test", "sts", "success", "mx.dest.test", "127.0.0.1",
                          policy, ("mx.dest.test",)), NOON)
    log.record(TlsAttempt("dest.test", "sts", "certificate-expired", "mx.dest.test",
                          "127.0.0.1", policy, ("mx.dest.test",)), NOON)
    return log


def test_tlsrpt_message_shape(tmp_path: Path) -> None:
    (report,) = build_tlsrpt(_tls_log(tmp_path).read(DAY), DAY, org_name="mail.example.test",
                            contact=SENDER)
    raw = report_message(report, sender=SENDER, recipient="t@dest.test", now=NEXT_DAY)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == "dest.test"
    assert msg["TLS-Report-Submitter"] == "example.test"  # the domain of contact-info
    assert msg["TLS-Required"] == "No"
    assert msg["Subject"] == ("Report Domain: dest.test Submitter: example.test "
                              f"Report-ID: <{report.report_id}>")
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "application/tlsrpt+gzip"]
    begin = int(dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp())
    assert parts[1].get_filename() == f"example.test!dest.test!{begin}!{begin + 86399}.json.gz"
    doc = json.loads(gzip.decompress(parts[1].get_content()))
    assert doc["contact-info"] == SENDER
    (policy,) = doc["policies"]
    assert policy["summary"] == {"total-successful-session-count": 1,
                                 "total-failure-session-count": 1}


class ReportEnv(OutboundEnv):
    posts: list[tuple[str, bytes]]
    https_port = 0


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[ReportEnv]:
    async with outbound_env(tmp_path, ReportEnv) as e:
        e.posts = []
        e.dns.add("reports.dest.test", "A", "127.0.0.1")

        async def receive(request: web.Request) -> web.Response:
            e.posts.append((request.content_type, await request.read()))
            return web.Response(status=201)

        app = web.Application()
        app.router.add_post("/tlsrpt", receive)
        async with loopback_https(app, "reports.dest.test", tmp_path / "rep.crt",
                                  tmp_path / "rep.key") as port:
            e.https_port = port
            yield e


def _sender(env: ReportEnv, **kw: object) -> ReportSender:
    assert env.mgr is not None
    settings = env.settings()
    return ReportSender(resolver_for(settings), env.mgr.enqueue, sender=SENDER,
                        org_name="mail.example.test", https_ca=str(env.tmp / "rep.crt"),
                        clock=lambda: NEXT_DAY, **kw)  # type: ignore[arg-type]


async def test_tlsrpt_mail_and_https_once(env: ReportEnv) -> None:
    env.dns.add("_smtp._tls.dest.test", "TXT",
                f"v=TLSRPTv1; rua=mailto:tls@dest.test,https://reports.dest.test:"
                f"{env.https_port}/tlsrpt")
    write_key(env.tmp, "example.test", "s1")
    await env.manager()
    _tls_log(env.tmp / "tlsrpt")
    sender = _sender(env, dmarc_dir=None, tlsrpt_dir=env.tmp / "tlsrpt")
    assert await sender.send_due() == 2
    (got,) = await env.rx.wait_for(1)
    assert got.rcpt_tos == ["tls@dest.test"] and got.mail_from == SENDER
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert msg["TLS-Report-Domain"] == "dest.test"
    # RFC 8460 §5.3: the report's own fields are under the DKIM signature.
    signature = str(msg["DKIM-Signature"]).lower().replace(" ", "")
    assert "tls-report-domain" in signature and "tls-report-submitter" in signature
    ((ctype, body),) = env.posts
    assert ctype == "application/tlsrpt+gzip"
    assert json.loads(gzip.decompress(body))["policies"][0]["policy"]["policy-domain"] == \
        "dest.test"
    # A second pass (a restart, the next hour) sends nothing again.
    assert await _sender(env, dmarc_dir=None, tlsrpt_dir=env.tmp / "tlsrpt").send_due() == 0
    assert len(env.posts) == 1


async def test_tlsrpt_https_failure_is_retried_next_pass(env: ReportEnv) -> None:
    env.dns.add("_smtp._tls.dest.test", "TXT",
                f"v=TLSRPTv1; rua=https://reports.dest.test:{env.https_port}/nowhere")
    await env.manager()
    _tls_log(env.tmp / "tlsrpt")
    sender = _sender(env, dmarc_dir=None, tlsrpt_dir=env.tmp / "tlsrpt")
    assert await sender.send_due() == 0  # 404: not marked as sent
    assert not (env.tmp / "tlsrpt" / f"{DAY.isoformat()}.sent").exists()


def _dmarc_log(directory: Path, rua: tuple[str, ...]) -> None:
    log = DmarcLog(directory)
    result = DmarcResult("fail", "dest.test", "reject", "reject", "dest.test",
                         record=DmarcRecord("reject", rua=rua), record_domain="dest.test")
    log.record(when=NOON, source_ip="192.0.2.1", envelope_from="evil.example", result=result,
               disposition="reject", spf=("evil.example", "mfrom", "pass"), dkim=[])


async def test_dmarc_report_mail(env: ReportEnv) -> None:
    await env.manager()
    _dmarc_log(env.tmp / "dmarc", ("mailto:dmarc@dest.test!1m", "https://ignored.test/"))
    sender = _sender(env, dmarc_dir=env.tmp / "dmarc", tlsrpt_dir=None)
    assert await sender.send_due() == 1
    (got,) = await env.rx.wait_for(1)
    assert got.rcpt_tos == ["dmarc@dest.test"]
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert str(msg["Subject"]).startswith("Report Domain: dest.test Submitter: mail.example.test "
                                          "Report-ID: <")
    attachment = next(p for p in msg.iter_attachments())
    assert attachment.get_content_type() == "application/gzip"
    assert attachment.get_filename().startswith("mail.example.test!dest.test!")
    assert attachment.get_filename().endswith(".xml.gz")
    xml = gzip.decompress(attachment.get_content()).decode()
    root = ET.fromstring(xml.split("\n", 1)[1])
    assert root.findtext("policy_published/domain") == "dest.test"
    assert root.findtext("record/row/count") == "1"
    assert "TLS-Required" not in msg


@pytest.mark.parametrize("authorised", [False, True])
async def test_dmarc_external_destination_needs_its_consent(env: ReportEnv,
                                                            authorised: bool) -> None:
    # RFC 7489 §7.1: reports for dest.test to another organization only with a
    # dest.test._report._dmarc.<that domain> record.
    env.dns.add("other.test", "MX", "10 mx.dest.test.")
    if authorised:
        env.dns.add("dest.test._report._dmarc.other.test", "TXT", "v=DMARC1")
    await env.manager()
    _dmarc_log(env.tmp / "dmarc", ("mailto:agg@other.test",))
    sender = _sender(env, dmarc_dir=env.tmp / "dmarc", tlsrpt_dir=None)
    assert await sender.send_due() == (1 if authorised else 0)
    if authorised:
        (got,) = await env.rx.wait_for(1)
        assert got.rcpt_tos == ["agg@other.test"]


async def test_size_limit_drops_the_report(env: ReportEnv) -> None:
    await env.manager()
    _dmarc_log(env.tmp / "dmarc", ("mailto:dmarc@dest.test!100",))
    assert await _sender(env, dmarc_dir=env.tmp / "dmarc", tlsrpt_dir=None).send_due() == 0


async def test_daemon_sends_yesterdays_report_at_start(env: ReportEnv) -> None:
    # The App wiring: [outbound] tlsrpt_send starts the sender in the process
    # that runs the queue; yesterday's TLS-RPT log goes out at start.
    env.dns.add("_smtp._tls.dest.test", "TXT", "v=TLSRPTv1; rua=mailto:tls@dest.test")
    data = env.tmp / "daemon"
    TlsReportLog(data / "tlsrpt").record(
        TlsAttempt("dest.test", "no-policy-found", "success", "mx.dest.test", "127.0.0.1"),
        time.time() - 86400)
    settings = env.settings(tlsrpt=True, tlsrpt_send=True)
    app = App(dataclasses.replace(make_config(data, outbound=settings), listeners=()))
    await app.start()
    try:
        assert app.reports is not None and app.reports.sender == f"postmaster@{DOMAIN}"
        (got,) = await env.rx.wait_for(1)
        assert got.rcpt_tos == ["tls@dest.test"]
        assert b"TLS-Report-Domain: dest.test" in got.data
    finally:
        await app.stop()


@given(st.text(max_size=60), st.text(max_size=60))
def test_report_fields_stay_one_line(domain: str, target: str) -> None:
    # Domains and rua addresses come from DNS: none may start a field of its own.
    report = build_tlsrpt(_tls_log_lines(), DAY, org_name="mail.example.test",
                          contact=SENDER)[0]
    report = dataclasses.replace(report, policy_domain=domain)
    raw = report_message(report, sender=SENDER, recipient=target, now=NEXT_DAY)
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    names = [line.split(b":", 1)[0] for line in head if not line.startswith(b" ")]
    assert names == [b"From", b"To", b"Date", b"Message-ID", b"Subject", b"TLS-Report-Domain",
                     b"TLS-Report-Submitter", b"TLS-Required", b"MIME-Version",
                     b"Content-Type"]
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")


def _tls_log_lines() -> list[dict[str, object]]:
    return [{"time": int(NOON), "domain": "dest.test", "type": "sts", "result": "success",
             "mx": "mx.dest.test", "ip": "127.0.0.1", "policy": [], "patterns": []}]
