"""RFC 5321 §4.5.1 postmaster and §6.3 loop detection on the MX listener."""

from __future__ import annotations

import dataclasses
import smtplib

from support.server import make_config, running_server

from mailserver.config import ChecksSettings


def _inbox_count(server, account: str) -> int:
    box = server.call(server.store.get_mailbox, account, "INBOX")
    return len(server.call(server.store.list_messages, box.id))


def test_postmaster_reaches_the_first_account_by_default(server) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("someone@remote.example")
        assert smtp.rcpt("postmaster")[0] == 250  # no domain: MUST be accepted
        assert smtp.rcpt("PostMaster@EXAMPLE.TEST")[0] == 250  # any case
        assert smtp.rcpt("postmaster@elsewhere.test")[0] == 550  # not ours: relay denied
        smtp.data(b"Subject: abuse report\r\n\r\nhi\r\n")
    assert _inbox_count(server, "alice@example.test") == 1  # one copy per account
    assert _inbox_count(server, "bob@example.test") == 0


def test_postmaster_reaches_the_configured_account(tmp_path) -> None:
    config = dataclasses.replace(make_config(tmp_path),
                                 checks=ChecksSettings(postmaster="bob@example.test"))
    with running_server(config) as server, \
            smtplib.SMTP("127.0.0.1", server.port("smtp")) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("someone@remote.example")
        assert smtp.rcpt("postmaster@example.test")[0] == 250
        smtp.data(b"Subject: hi\r\n\r\nhi\r\n")
        assert _inbox_count(server, "bob@example.test") == 1
        # An account of that name wins over the fallback.
        server.add_user("postmaster@example.test", "pm-secret")
        smtp.mail("someone@remote.example")
        assert smtp.rcpt("postmaster@example.test")[0] == 250
        smtp.data(b"Subject: hi\r\n\r\nhi\r\n")
        assert _inbox_count(server, "postmaster@example.test") == 1


def test_too_many_received_fields_is_a_loop(server) -> None:
    hops = b"".join(b"Received: from hop%d.example by relay.example; "
                    b"Mon, 2 Mar 2026 10:00:00 +0000\r\n" % i for i in range(100))
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("someone@remote.example")
        smtp.rcpt("alice@example.test")
        assert smtp.data(hops + b"Subject: 100 hops\r\n\r\nhi\r\n")[0] == 250
        smtp.mail("someone@remote.example")
        smtp.rcpt("alice@example.test")
        code, text = smtp.data(b"received: from one-more.example; x\r\n" + hops
                               + b"Subject: 101 hops\r\n\r\nhi\r\n")
        assert (code, text[:5]) == (554, b"5.4.6")
        # Received: in the body is no hop.
        smtp.mail("someone@remote.example")
        smtp.rcpt("alice@example.test")
        assert smtp.data(b"Subject: quoted\r\n\r\n" + hops * 2)[0] == 250
