"""Postfix as a real peer (issue 12 §5), a throwaway instance on loopback
(``support.postfix``; needs root, as ./scripts/test runs in CI).

* CHUNKING (RFC 3030): Postfix relaying to our server, which offers
  CHUNKING and BINARYMIME, delivers the message whole.  Postfix's BDAT
  support (3.4 on) is in smtpd only: its SMTP client sends DATA even to a
  server that offers CHUNKING, which this test records (were a later Postfix
  to send BDAT, the test requires it to end with LAST and the message to
  arrive the same).  BDAT itself is driven on the wire by
  test_smtp_chunking.py, and by Exim as a real client in test_exim_peer.py.
* With Postfix (3.7: CHUNKING, no REQUIRETLS) as the receiving MX, our
  queue sends an ordinary message over STARTTLS in one ``BDAT <size> LAST``
  (RFC 3030), but a REQUIRETLS message (RFC 8689) never: no MAIL is sent
  for it, and the sender gets a 5.7.30 bounce (§5)."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.outbound import OutboundEnv, outbound_env
from support.postfix import running_postfix
from support.server import ServerThread, inbox_of

from mailserver.tls import make_self_signed

ALICE = "alice@example.test"


def inbox(server: ServerThread) -> list[bytes]:
    return inbox_of(server, ALICE)


def test_postfix_relays_to_us(server: ServerThread) -> None:
    body = b"".join(b"line %d of a message relayed by Postfix\r\n" % i for i in range(300))
    msg = (b"From: <sender@remote.test>\r\nTo: <alice@example.test>\r\nSubject: via postfix\r\n"
           b"Message-ID: <pf1@remote.test>\r\n\r\n" + body)
    extra = f"transport_maps = inline:{{ example.test=smtp:[127.0.0.1]:{server.port('smtp')} }}\n"
    with running_postfix(extra, users=(ALICE,)) as pf:
        with smtplib.SMTP("127.0.0.1", pf.smtp_port) as c:
            c.sendmail("sender@remote.test", [ALICE], msg)
        pf.wait_log(r"status=sent")
        said = pf.dialogue("smtp")
    assert "< 250-CHUNKING" in said and "< 250-BINARYMIME" in said, said
    bdat = [x for x in said if x.startswith("> BDAT ")]
    if bdat:
        assert bdat[-1].endswith(" LAST") and "> DATA" not in said, said
    else:
        assert "> DATA" in said and "< 354 End data with <CR><LF>.<CR><LF>" in said, said
    (stored,) = inbox(server)
    assert stored.endswith(body) and b"Subject: via postfix\r\n" in stored


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[OutboundEnv]:
    async with outbound_env(tmp_path, OutboundEnv) as e:
        yield e


async def test_bdat_and_requiretls_to_a_postfix_mx(env: OutboundEnv, tmp_path: Path) -> None:
    cert, key = tmp_path / "mx.crt", tmp_path / "mx.key"
    make_self_signed("mx.dest.test", cert, key)  # verifies against ca_file = cert
    extra = (f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {cert}\n"
             f"smtpd_tls_key_file = {key}\nsmtpd_tls_loglevel = 1\n"
             "transport_maps = inline:{ dest.test=discard: }\n")
    cm = running_postfix(extra)
    pf = await asyncio.to_thread(cm.__enter__)
    try:
        mgr = await env.manager(smtp_port=pf.smtp_port, ca_file=str(cert))
        plain = (b"From: <alice@example.test>\r\nTo: <bob@dest.test>\r\nSubject: ordinary\r\n"
                 b"Message-ID: <o1@example.test>\r\n\r\nhello\r\n")
        await mgr.enqueue(ALICE, ["bob@dest.test"], plain)
        await asyncio.to_thread(pf.wait_log, r"postfix/discard\[\d+\]: .*to=<bob@dest.test>.*status=sent")
        log = pf.log()
        assert re.search(r"TLS connection established from", log), log[-2000:]
        said = pf.dialogue("smtpd")
        assert "> 250-CHUNKING" in said or "> 250 CHUNKING" in said, said
        assert not any("REQUIRETLS" in x for x in said if x.startswith("> 250"))
        (bdat,) = [x for x in said if x.startswith("< BDAT ")]
        size = int(bdat.split()[2])
        assert bdat == f"< BDAT {size} LAST" and size >= len(plain) and "< DATA" not in said
        assert re.search(r"postfix/qmgr\[\d+\]: \w+: from=<alice@example.test>, size=\d+", log)
        secret = (b"From: <alice@example.test>\r\nTo: <bob@dest.test>\r\nSubject: rt\r\n"
                  b"Message-ID: <rt1@example.test>\r\n\r\nsecret body\r\n")
        await mgr.enqueue(ALICE, ["bob@dest.test"], secret, requiretls=True)
        await env.wait_local(1)
        report, rcpt = env.local[0]
        assert rcpt == ALICE
        assert b"Status: 5.7.30" in report and b"Action: failed" in report
        assert b"secret body" not in report  # header section only (RFC 8689 §5)
        # Postfix never got a MAIL for it (the bounce is final: none will come).
        assert len(re.findall(r"MAIL FROM:<alice@example.test>", pf.log())) == 1
        assert "rt1@example.test" not in pf.log()
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)
