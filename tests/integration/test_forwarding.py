"""Aliases with several targets, local and remote (issue #11 §2): each local
account gets its copy, the remote ones travel through the real queue to a
receiving server with an SRS reverse-path and our ARC seal (verified with
dkimpy against our loopback DNS), and a bounce to the SRS address goes back
to the original sender; a forged SRS address is an unknown user."""

from __future__ import annotations

import dataclasses
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from support.dnsserver import DnsServer, dest_dns
from support.loopthread import LoopThread
from support.outbound import outbound_settings
from support.server import USERS, ServerThread, make_config
from support.smtpreceiver import Receiver

from mailserver.config import ChecksSettings
from mailserver.delivery.forward import load_secret
from mailserver.dkim.keys import write_key
from mailserver.errors import AccountNotFound
from mailserver.protocol.srs import SrsCodec

ALICE, BOB = "alice@example.test", "bob@example.test"
FAR = "far@dest.test"
SENDER = "someone@sender.test"


@dataclasses.dataclass
class Env:
    server: ServerThread
    dns: DnsServer
    rx: Receiver
    rx_loop: LoopThread

    def received(self, n: int) -> list[Any]:
        return self.rx_loop.run(self.rx.wait_for(n))

    def inbox(self, account: str) -> list[bytes]:
        store = self.server.store
        mailbox = self.server.call(store.get_mailbox, account, "INBOX")
        records = self.server.call(store.list_messages, mailbox.id)
        return [r.prefix + self.server.call(store.get_blob, r.blob_id) for r in records]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    dns = dest_dns()
    data = tmp_path / "data"
    _, txt = write_key(data, "example.test", "fwd", "rsa")
    dns.add("fwd._domainkey.example.test", "TXT", txt)
    dns.add("sender.test", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")
    rx_loop = LoopThread()
    rx = Receiver(tls_dir=tmp_path)
    rx_loop.run(rx.start())
    config = make_config(data, outbound=outbound_settings(dns, rx.port,
                                                          hostname="mx.example.test"))
    config = dataclasses.replace(config, checks=ChecksSettings(verify=True))
    server = ServerThread(config)
    try:
        for address, password in USERS.items():
            server.add_user(address, password)
        server.run(server.app.admin().add_alias(
            "team@example.test", [ALICE, BOB, FAR, "Alice@Example.TEST"]))
        yield Env(server, dns, rx, rx_loop)
    finally:
        server.stop()
        rx_loop.run(rx.stop())
        rx_loop.close()
        dns.stop()


MESSAGE = (b"From: Someone <someone@sender.test>\r\nTo: team@example.test\r\n"
           b"Subject: to the team\r\nMessage-ID: <t1@sender.test>\r\n\r\nHello team.\r\n")


def test_alias_delivers_locally_and_forwards_with_srs_and_arc(env: Env) -> None:
    with smtplib.SMTP("127.0.0.1", env.server.port("smtp")) as c:
        c.ehlo("client.sender.test")
        assert c.sendmail(SENDER, ["team@example.test"], MESSAGE) == {}
    [a] = env.inbox(ALICE)  # once, though named twice
    [b] = env.inbox(BOB)
    assert a.endswith(MESSAGE) and b.endswith(MESSAGE)
    [got] = env.received(1)
    assert got.rcpt_tos == [FAR]
    assert got.mail_from.startswith("SRS0=") and got.mail_from.endswith("=sender.test=someone"
                                                                          "@example.test")
    secret = load_secret(env.server.app.config.data_dir)
    assert SrsCodec(secret).reverse(got.mail_from, time.time()) == SENDER
    assert got.data.endswith(MESSAGE)
    assert b"ARC-Seal: i=1;" in got.data and b"ARC-Authentication-Results: i=1;" in got.data
    result, _, reason = dkim.arc_verify(got.data, dnsfunc=env.dns.txt_lookup)
    assert result == dkim.CV_Pass, reason


def test_a_bounce_to_the_srs_address_returns_to_the_sender(env: Env) -> None:
    secret = load_secret(env.server.app.config.data_dir)
    original = "orig@dest.test"  # the loopback receiver is dest.test's MX
    srs = SrsCodec(secret).forward(original, "example.test", time.time())
    with smtplib.SMTP("127.0.0.1", env.server.port("smtp")) as c:
        c.ehlo("mx.dest.test")
        assert c.mail("<>")[0] == 250
        assert c.rcpt(srs)[0] == 250
        forged = srs.replace("=orig@", "=mallory@")
        code, text = c.rcpt(forged)
        assert code == 550 and text.startswith(b"5.1.1")
        assert c.rcpt("SRS0=abcd=AA=x.test=y@example.test")[0] == 550
        assert c.data(b"Subject: Undelivered Mail\r\n\r\nbounced\r\n")[0] == 250
    [got] = env.received(1)
    assert got.mail_from in ("", "<>") and got.rcpt_tos == [original]


def test_alias_commands_take_several_targets(env: Env) -> None:
    admin = env.server.app.admin()
    listed = env.server.run(admin.get_alias("team@example.test"))
    assert listed.targets == (ALICE, BOB, FAR)
    # Deleting an account takes it out of the aliases; the alias stays for the rest.
    env.server.run(admin.delete_account(BOB))
    assert env.server.run(admin.get_alias("team@example.test")).targets == (ALICE, FAR)
    with pytest.raises(AccountNotFound, match="not an account"):
        env.server.run(admin.add_alias("x@example.test", ["nobody@example.test"]))
