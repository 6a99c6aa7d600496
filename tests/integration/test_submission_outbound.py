"""Submission end to end: a real client submits to the real server, local
recipients land in the store, remote ones travel through the real queue to a
receiving SMTP server, with DNS (MX, A, DKIM TXT) from our loopback DNS server.

The receiver runs on an event loop of its own (a thread), as a remote MX
would; the server runs in ``support.server.ServerThread``.  Waiting is on events
(``Receiver.wait_for``, ``QueueManager.wait_rounds``), never sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import email
import email.policy
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import dkim
import pytest
from structlog.testing import capture_logs
from support.daemon import run_cli
from support.dnsserver import DnsServer, dest_dns
from support.loopthread import LoopThread
from support.outbound import outbound_settings
from support.server import USERS, ServerThread, make_config
from support.smtpreceiver import Receiver
from support.wire import client_tls_context

from mailserver.admin import AdminService, QueueEntry
from mailserver.config import DkimSettings, LogSettings
from mailserver.dkim.keys import write_key
from mailserver.log import configure as configure_logging
from mailserver.queue import model as queue_model

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@dest.test"


@dataclasses.dataclass
class Env:
    server: ServerThread
    dns: DnsServer
    rx: Receiver
    rx_loop: LoopThread

    def received(self, n: int) -> list[Any]:
        return self.rx_loop.run(self.rx.wait_for(n))

    @property
    def admin(self) -> AdminService:
        """The daemon's own admin service: its store, config and scheduler."""
        return self.server.app.admin()

    def list_queue(self) -> list[QueueEntry]:
        return self.server.run(self.admin.list_queue())

    def wait_rounds(self, n: int) -> None:
        self.server.run(asyncio.wait_for(self.server.app.queue.wait_rounds(n), 30))

    def inbox(self, account: str) -> list[bytes]:
        store = self.server.store
        mailbox = self.server.call(store.get_mailbox, account, "INBOX")
        records = self.server.call(store.list_messages, mailbox.id)
        return [r.prefix + self.server.call(store.get_blob, r.blob_id) for r in records]

    def dnsfunc(self) -> Any:
        """dkimpy's TXT lookup, asking our DNS server."""
        return self.dns.txt_lookup


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    dns_server = dest_dns()
    data = tmp_path / "data"
    for selector, algorithm in (("mail", "rsa"), ("mail-ed25519", "ed25519")):
        _, txt = write_key(data, "example.test", selector, algorithm)
        dns_server.add(f"{selector}._domainkey.example.test", "TXT", txt)
    rx_loop = LoopThread()
    rx = Receiver(tls_dir=tmp_path)
    rx_loop.run(rx.start())
    outbound = outbound_settings(dns_server, rx.port, hostname="mx.example.test")
    config = dataclasses.replace(
        make_config(data, outbound=outbound),
        dkim=DkimSettings(algorithms=("rsa", "ed25519")),
    )
    server = ServerThread(config)
    try:
        for address, password in USERS.items():
            server.add_user(address, password)
        yield Env(server, dns_server, rx, rx_loop)
    finally:
        server.stop()
        rx_loop.run(rx.stop())
        rx_loop.close()
        dns_server.stop()


def message(subject: str, to: str, sender: str = ALICE) -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello.\r\n.a line with a leading dot\r\n"
    ).encode()


def starttls_client(env: Env) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", env.server.port("submission"), timeout=30)
    client.starttls(context=client_tls_context())
    client.ehlo("laptop.test")
    client.login(ALICE, USERS[ALICE])
    return client


def assert_dkim_valid(env: Env, data: bytes) -> None:
    assert data.count(b"DKIM-Signature:") == 2  # RSA-SHA256 and Ed25519-SHA256 (RFC 8463)
    algorithms = set()
    for idx in (0, 1):
        verifier = dkim.DKIM(data)
        assert verifier.verify(idx=idx, dnsfunc=env.dnsfunc()), idx
        algorithms.add(verifier.signature_fields[b"a"])
    assert algorithms == {b"rsa-sha256", b"ed25519-sha256"}


def test_starttls_submission_to_local_and_remote_at_once(env: Env) -> None:
    body = message("both", f"{BOB}, {CAROL}")
    with starttls_client(env) as client:
        assert client.sendmail(ALICE, [BOB, CAROL], body) == {}
    # Local: in Bob's INBOX as soon as the 250 came.
    [local] = env.inbox(BOB)
    assert local.startswith(b"Return-Path: <alice@example.test>\r\n")
    assert local.endswith(body)
    # Remote: through the queue, over STARTTLS, signed twice.
    [got] = env.received(1)
    assert got.mail_from == ALICE and got.rcpt_tos == [CAROL] and got.tls
    assert got.data.endswith(body)
    head = got.data.split(b"\r\n\r\n", 1)[0]
    assert b" with ESMTPSA id " in head and b"\r\nMessage-ID: <" in head
    assert b"\r\nDate: " in head  # submission fix-ups (RFC 6409 §8)
    assert_dkim_valid(env, got.data)


def test_starttls_submission_to_local_only(env: Env) -> None:
    with starttls_client(env) as client:
        assert client.sendmail(ALICE, [BOB], message("local", BOB)) == {}
    assert len(env.inbox(BOB)) == 1
    assert env.list_queue() == []  # nothing queued


async def test_implicit_tls_submission_to_remote(env: Env) -> None:
    body = message("implicit", CAROL)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=env.server.port("submissions"),
                               use_tls=True, tls_context=client_tls_context()) as client:
        await client.login(ALICE, USERS[ALICE])
        errors, response = await client.sendmail(ALICE, [CAROL], body)
        assert errors == {} and response.startswith("2.0.0 ")
    [got] = await asyncio.to_thread(env.received, 1)
    assert got.rcpt_tos == [CAROL] and got.data.endswith(body)
    await asyncio.to_thread(assert_dkim_valid, env, got.data)
    assert env.inbox(BOB) == []


def test_rejected_remote_recipient_bounces_to_senders_inbox(env: Env) -> None:
    env.rx.rcpt_replies["nobody@dest.test"] = "550 5.1.1 no such user"
    with starttls_client(env) as client:
        assert client.sendmail(ALICE, [CAROL, "nobody@dest.test"],
                               message("partly", CAROL)) == {}
    env.wait_rounds(1)  # the round ends after the DSN is durable
    [got] = env.received(1)
    assert got.rcpt_tos == [CAROL]
    [report] = env.inbox(ALICE)
    assert report.startswith(b"Return-Path: <>\r\n")  # RFC 3464 §2: null reverse-path
    msg = email.message_from_bytes(report, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert b"Final-Recipient: rfc822; nobody@dest.test" in report
    assert b"Action: failed" in report and b"Status: 5.1.1" in report
    assert env.list_queue() == []


def test_refusals(env: Env) -> None:
    port = env.server.port("submission")
    # AUTH before TLS: RFC 4954 §4 / RFC 8314.
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        auth = "PLAIN " + base64.b64encode(f"\0{ALICE}\0{USERS[ALICE]}".encode()).decode()
        code, text = client.docmd("AUTH", auth)
        assert (code, text[:7]) == (538, b"5.7.11 ")
        code, text = client.docmd("MAIL FROM:<alice@example.test>")
        assert (code, text[:6]) == (530, b"5.7.0 ")
    # Wrong password.
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=client_tls_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login(ALICE, "wrong-password")
        assert info.value.smtp_code == 535 and info.value.smtp_error.startswith(b"5.7.8 ")
    with starttls_client(env) as client:
        # MAIL FROM someone else's address.
        code, text = client.docmd("MAIL FROM:<bob@example.test>")
        assert (code, text[:6]) == (553, b"5.7.1 ")
        client.rset()
        # From: header someone else's (RFC 6409 §6.1), local and remote.
        for forged in (message("forged", CAROL, sender=BOB),
                       message("forged", CAROL, sender="ceo@dest.test"),
                       b"From: alice@example.test <bob@example.test>\r\n\r\nambiguous\r\n"):
            with pytest.raises(smtplib.SMTPDataError) as data_info:
                client.sendmail(ALICE, [BOB, CAROL], forged)
            assert data_info.value.smtp_code == 553
            assert data_info.value.smtp_error.startswith(b"5.7.1 ")
        # An alias of Alice's is hers in From: too.
        env.server.run(env.server.store.add_alias("a.liddell@example.test", ALICE))
        assert client.sendmail(ALICE, [BOB], message("alias", BOB,
                                                    sender="a.liddell@example.test")) == {}
    # Relay without AUTH on port 25.
    with smtplib.SMTP("127.0.0.1", env.server.port("smtp"), timeout=30) as client:
        client.ehlo()
        assert client.mail(ALICE)[0] == 250
        code, text = client.rcpt(CAROL)
        assert (code, text[:6]) == (550, b"5.7.1 ")
    [only] = env.inbox(BOB)  # just the alias message: nothing forged got through
    assert b"Subject: alias" in only
    assert env.list_queue() == []
    assert env.rx.received == []


def test_auth_failures_are_counted_per_address_across_connections(env: Env) -> None:
    port = env.server.port("submission")
    bad = "PLAIN " + base64.b64encode(f"\0{ALICE}\0wrong-password".encode()).decode()
    for _ in range(2):  # one failure per connection: the per-connection limit never trips
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.starttls(context=client_tls_context())
            client.ehlo()
            assert client.docmd("AUTH", bad)[0] == 535
    throttle = env.server.app.services.counters.throttle
    assert throttle.failures("127.0.0.1") == 2
    assert throttle.delay(2) == env.server.config.limits.auth_failure_delay


@contextlib.contextmanager
def info_logs() -> Iterator[list[dict[str, Any]]]:
    """The log events (level info and up) logged meanwhile, by every thread."""
    configure_logging(LogSettings(format="console", level="info"))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        configure_logging(LogSettings(format="console", level="warning"))  # as conftest


def test_cli_retry_reaches_the_running_daemons_scheduler(env: Env, tmp_path: Path) -> None:
    """The CLI's admin service has no queue control (another process): its
    retry reaches the daemon's scheduler through the store's change feed, long
    before the backoff (an hour) would."""
    env.rx.mode = "tempfail"
    with starttls_client(env) as client:
        assert client.sendmail(ALICE, [CAROL], message("retried", CAROL)) == {}
    env.wait_rounds(1)
    [entry] = env.list_queue()
    assert [r.status for r in entry.recipients] == ["deferred"]
    env.rx.mode = "accept"
    conf = tmp_path / "cli.toml"
    conf.write_text(f'hostname = "mx.example.test"\ndata_dir = "{env.server.config.data_dir}"\n',
                    encoding="utf-8")
    retried = run_cli("queue", "retry", entry.id, "-c", conf)
    assert retried.returncode == 0, retried.stderr
    [got] = env.received(1)
    assert got.rcpt_tos == [CAROL]
    env.wait_rounds(2)
    assert env.list_queue() == []


def test_one_id_from_the_250_reply_to_the_queue_the_cli_the_dsn_and_the_logs(
    env: Env, tmp_path: Path
) -> None:
    """Postfix-style: the id in "250 ... queued as ID" names the message in the
    queue (``mailserver queue show ID``), its Received: field, the DSN about it
    (X-Queue-ID) and the queue_id of the smtp and the queue log lines."""
    env.rx.rcpt_replies[CAROL] = "451 4.3.0 try again later"  # stays queued
    env.rx.rcpt_replies["nobody@dest.test"] = "550 5.1.1 no such user"  # a DSN about it
    with info_logs() as logs, starttls_client(env) as client:
        assert client.mail(ALICE)[0] == 250
        assert client.rcpt(CAROL)[0] == 250 and client.rcpt("nobody@dest.test")[0] == 250
        code, text = client.data(message("one id", CAROL))
        assert code == 250
        match = re.fullmatch(rb"2\.0\.0 Ok: queued as (\S+)", text)
        assert match is not None, text
        qid = match.group(1).decode()
        env.wait_rounds(1)
    # The queue knows it by that id, in-process and through the CLI.
    rec = env.server.run(env.admin.queued(qid))
    assert rec.id == qid
    conf = tmp_path / "cli.toml"
    conf.write_text(f'hostname = "mx.example.test"\ndata_dir = "{env.server.config.data_dir}"\n',
                    encoding="utf-8")
    shown = run_cli("queue", "show", qid, "-c", conf)
    assert shown.returncode == 0, shown.stderr
    assert f"id            {qid}\n" in shown.stdout
    assert f"rcpt          {CAROL}\tdeferred" in shown.stdout
    assert qid in run_cli("queue", "list", "-c", conf).stdout
    # The Received: field of the queued content names it.
    blob_id = queue_model.decode(env.server.call(env.server.store.queue_get, qid)).blob_id
    blob = env.server.call(env.server.store.get_blob, blob_id)
    assert f" with ESMTPSA id {qid};\r\n".encode() in blob.split(b"\r\n\r\n", 1)[0]
    # The failure report about it carries it as X-Queue-ID (RFC 3464 §2.2.5).
    [report] = env.inbox(ALICE)
    assert f"\r\nX-Queue-ID: {qid}\r\n".encode() in report
    # The SMTP acceptance and the queue's lines share it; accepted is not "delivered".
    [accepted] = [e for e in logs if e["event"] == "message_accepted"]
    assert accepted["queue_id"] == qid and accepted["queued"] == 2
    assert accepted["delivered"] == 0
    assert not [e for e in logs if e["event"] == "message_delivered"]
    queue_events = {e["event"] for e in logs if e.get("queue_id") == qid}
    assert {"message_accepted", "queued", "delivery_deferred", "delivery_failed",
            "dsn_sent"} <= queue_events
    assert not [e for e in logs if e["event"] == "delivery_deferred" and e["queue_id"] != qid]
