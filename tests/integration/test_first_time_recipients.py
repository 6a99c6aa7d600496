"""First-time recipients per day per authenticated account (issue #11 §3):
recipients the account never sent to are counted at RCPT and refused with
``451 4.7.1`` past the limit; the account's known correspondents, other
accounts and local recipients are not limited; marks go with the account."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server import USERS, ServerThread, make_config, running_server
from support.wire import client_tls_context

ALICE, BOB = "alice@example.test", "bob@example.test"
BODY = b"From: <{}>\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerThread]:
    config = make_config(tmp_path / "data", first_time_recipients_per_day=2,
                         trusted_networks=())
    with running_server(config) as s:
        yield s


def client(srv: ServerThread, user: str) -> smtplib.SMTP:
    c = smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30)
    c.starttls(context=client_tls_context())
    c.ehlo("laptop.test")
    c.login(user, USERS[user])
    return c


def rcpts(c: smtplib.SMTP, sender: str, *addresses: str) -> list[tuple[int, bytes]]:
    assert c.mail(sender)[0] == 250
    return [c.rcpt(a) for a in addresses]


def test_new_recipients_are_limited_known_ones_are_not(srv: ServerThread) -> None:
    with client(srv, ALICE) as c:
        got = rcpts(c, ALICE, "one@far.test", "two@far.test", "three@far.test", BOB)
        assert [code for code, _ in got] == [250, 250, 451, 250]
        assert got[2][1].startswith(b"4.7.1")
        assert c.data(BODY.replace(b"{}", ALICE.encode()))[0] == 250
        assert srv.store.has_sent_to(ALICE, "ONE@far.test")
        # The same correspondents again: known, not counted; a new one: refused.
        got = rcpts(c, ALICE, "one@far.test", "two@far.test", "four@far.test")
        assert [code for code, _ in got] == [250, 250, 451]
        c.rset()
    with client(srv, BOB) as c:  # another account has its own count
        assert [code for code, _ in rcpts(c, BOB, "one@far.test")] == [250]
    srv.run(srv.app.admin().delete_account(ALICE))
    assert not srv.store.has_sent_to(ALICE, "one@far.test")
