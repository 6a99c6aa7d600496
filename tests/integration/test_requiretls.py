"""REQUIRETLS (RFC 8689) on ingress and in the outbound queue.

Ingress: advertised only under TLS (§3), the MAIL parameter refused in clear,
carried into the queue record.  Outbound, with our loopback DNS server and a
loopback receiver: a REQUIRETLS message goes only over STARTTLS to a host
whose certificate verifies (here against the receiver's own certificate as
``ca_file``) and that offers REQUIRETLS, and MAIL carries REQUIRETLS again
(§4.2.2); otherwise it bounces with 5.7.30 (§5) and the DSN returns the
header section only.  ``TLS-Required: No`` (§4.2.1) waives a ``require_tls``
domain's policy for its message."""

from __future__ import annotations

import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.outbound import OutboundEnv, outbound_env
from support.server import ServerThread
from support.wire import client_tls_context

SENDER = "alice@example.test"
BODY = b"secret body line\r\n"


def message(extra: bytes = b"") -> bytes:
    return (b"From: <alice@example.test>\r\nTo: <bob@dest.test>\r\nSubject: rt\r\n" + extra
            + b"Message-ID: <rt@example.test>\r\n\r\n" + BODY)


def test_ingress_offers_requiretls_only_under_tls(server: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as c:
        c.ehlo("client.example.net")
        assert not c.has_extn("requiretls")
        code, text = c.docmd("MAIL", "FROM:<x@example.net> REQUIRETLS")
        assert code == 530 and text.startswith(b"5.7.10")
        c.starttls(context=client_tls_context())
        c.ehlo("client.example.net")
        assert c.has_extn("requiretls")
        assert c.docmd("MAIL", "FROM:<x@example.net> REQUIRETLS")[0] == 250
        assert c.docmd("RCPT", "TO:<alice@example.test>")[0] == 250


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[OutboundEnv]:
    async with outbound_env(tmp_path, OutboundEnv) as e:
        # A certificate for the MX name, so that it verifies against ``ca_file``.
        await e.rx.stop()
        e.rx.cert_path.unlink()
        e.rx.cert_name = "mx.dest.test"
        await e.rx.start()
        yield e


async def test_sent_over_verified_tls_with_requiretls(env: OutboundEnv) -> None:
    env.rx.requiretls = True
    await env.rx.stop()
    await env.rx.start()
    mgr = await env.manager(ca_file=str(env.rx.cert_path))
    qid = await mgr.enqueue(SENDER, ["bob@dest.test"], message(), requiretls=True)
    assert (await env.admin.queued(qid)) is not None
    (got,) = await env.rx.wait_for(1)
    assert got.tls and got.requiretls
    await mgr.wait_idle()
    assert env.local == []  # no bounce


@pytest.mark.parametrize("why", ["no-requiretls", "unverified", "no-starttls"])
async def test_bounces_with_5_7_30_when_no_host_qualifies(env: OutboundEnv, tmp_path: Path,
                                                          why: str) -> None:
    await env.rx.stop()
    env.rx.requiretls = why != "no-requiretls"
    if why == "no-starttls":
        env.rx.tls_dir = None
    await env.rx.start()
    # "unverified": the system's trust store, which does not know the receiver's CA.
    ca = None if why == "unverified" else str(tmp_path / "rx.crt")
    mgr = await env.manager(**({"ca_file": ca} if ca else {}))
    await mgr.enqueue(SENDER, ["bob@dest.test"], message(), requiretls=True)
    await env.wait_local(1)
    report, rcpt = env.local[0]
    assert rcpt == SENDER
    assert b"Status: 5.7.30" in report and b"Action: failed" in report
    assert b"Subject: rt" in report and BODY not in report  # header section only (§5)
    assert env.rx.received == []  # never sent in clear, never to an unqualified host


async def test_tls_required_no_waives_the_domain_policy(env: OutboundEnv) -> None:
    await env.rx.stop()
    env.rx.tls_dir = None  # no STARTTLS at all
    await env.rx.start()
    mgr = await env.manager(require_tls=frozenset({"dest.test"}))
    await mgr.enqueue(SENDER, ["bob@dest.test"], message(b"TLS-Required: No\r\n"))
    (got,) = await env.rx.wait_for(1)
    assert not got.tls
