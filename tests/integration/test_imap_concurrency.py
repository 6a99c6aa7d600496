"""Several sessions on one mailbox, and IDLE (RFC 3501 §5.2, §7.4.1; RFC 2177).

Each session must learn about the others' STORE, EXPUNGE and APPEND at the
right moments: flag changes and new messages after any command, EXPUNGE only
when a command that may carry it runs (never during FETCH/STORE/SEARCH), and
at once while IDLE — an SMTP delivery included.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
from support.server import ServerThread
from support.wire import RawImap

MSG = b"Subject: c\r\n\r\nbody\r\n"


def append(c: RawImap, mailbox: str = "INBOX") -> None:
    line = c.cmd("ap", f"APPEND {mailbox} {{{len(MSG)}+}}\r\n".encode() + MSG)[-1]
    assert line.startswith(b"ap OK")


@pytest.fixture
def pair(server: ServerThread) -> Iterator[tuple[RawImap, RawImap]]:
    a = RawImap(server.port("imap"))
    b = RawImap(server.port("imap"))
    a.login()
    b.login()
    for _ in range(3):
        append(a)
    # The first read-write SELECT claims the new messages as \Recent
    # (RFC 3501 §2.3.2); selecting again leaves both views without \Recent.
    a.cmd("s0", "SELECT INBOX")
    a.cmd("s", "SELECT INBOX")
    b.cmd("s", "SELECT INBOX")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_store_seen_by_other_session_once(pair: tuple[RawImap, RawImap]) -> None:
    a, b = pair
    assert b.cmd("x", "STORE 1 +FLAGS (\\Flagged)")[0] == b"* 1 FETCH (FLAGS (\\Flagged))\r\n"
    assert a.cmd("n", "NOOP") == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n",
                                  b"n OK NOOP completed\r\n"]
    # Neither session hears about it again.
    assert a.cmd("n2", "NOOP") == [b"n2 OK NOOP completed\r\n"]
    assert b.cmd("n3", "NOOP") == [b"n3 OK NOOP completed\r\n"]


def test_append_by_other_session_gives_exists(pair: tuple[RawImap, RawImap]) -> None:
    a, b = pair
    append(b)
    # RECENT follows EXISTS (RFC 3501 §7.3.2); b's own APPEND claimed it (§2.3.2).
    assert a.cmd("n", "NOOP") == [b"* 4 EXISTS\r\n", b"* 0 RECENT\r\n",
                                  b"n OK NOOP completed\r\n"]
    # Also reported after a FETCH (new messages may be announced any time).
    append(b)
    lines = a.cmd("f", "FETCH 1 UID")
    assert b"* 5 EXISTS\r\n" in lines


def test_expunge_held_during_fetch_store_search(pair: tuple[RawImap, RawImap]) -> None:
    a, b = pair
    b.cmd("d", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert b.cmd("e", "EXPUNGE") == [b"* 2 EXPUNGE\r\n", b"e OK EXPUNGE completed\r\n"]
    # A still numbers the messages 1..3; the expunged one yields no data.
    lines = a.cmd("f", "FETCH 1:3 UID")
    assert lines == [b"* 1 FETCH (UID 1)\r\n", b"* 3 FETCH (UID 3)\r\n",
                     b"f OK FETCH completed\r\n"]
    assert a.cmd("s", "SEARCH ALL") == [b"* SEARCH 1 3\r\n", b"s OK SEARCH completed\r\n"]
    assert a.cmd("t", "STORE 3 +FLAGS (\\Seen)")[0] == b"* 3 FETCH (FLAGS (\\Seen))\r\n"
    assert not any(b"EXPUNGE" in x for x in a.cmd("t2", "STORE 1:3 -FLAGS.SILENT (\\Seen)"))
    # NOOP may carry it.
    assert a.cmd("n", "NOOP") == [b"* 2 EXPUNGE\r\n", b"n OK NOOP completed\r\n"]
    assert a.cmd("g", "FETCH 2 UID")[0] == b"* 2 FETCH (UID 3)\r\n"


def test_uid_fetch_may_carry_expunge(pair: tuple[RawImap, RawImap]) -> None:
    a, b = pair
    b.cmd("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd("e", "EXPUNGE")
    lines = a.cmd("f", "UID FETCH 1:* FLAGS")
    assert b"* 1 EXPUNGE\r\n" in lines
    assert lines[-1].startswith(b"f OK")


def test_flags_of_expunged_message_not_reported(pair: tuple[RawImap, RawImap]) -> None:
    a, b = pair
    b.cmd("d", "STORE 3 +FLAGS.SILENT (\\Deleted)")
    assert a.cmd("n", "FETCH 1 UID") == [b"* 1 FETCH (UID 1)\r\n",
                                         b"* 3 FETCH (UID 3 FLAGS (\\Deleted))\r\n",
                                         b"n OK FETCH completed\r\n"]
    b.cmd("e", "EXPUNGE")
    assert a.cmd("m", "NOOP") == [b"* 3 EXPUNGE\r\n", b"m OK NOOP completed\r\n"]


def test_idle_woken_by_smtp_delivery(server: ServerThread) -> None:
    a = RawImap(server.port("imap"))
    a.login()
    a.cmd("s", "SELECT INBOX")
    a.send(b"i IDLE\r\n")
    assert a.readline() == b"+ idling\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("someone@remote.test", ["alice@example.test"],
                      b"From: someone@remote.test\r\nSubject: hi\r\n\r\nhello\r\n")
    assert a.readline() == b"* 1 EXISTS\r\n"
    assert a.readline() == b"* 1 RECENT\r\n"
    a.send(b"DONE\r\n")
    assert a.readline() == b"i OK IDLE terminated\r\n"
    assert b"Subject: hi" in a.cmd("f", "FETCH 1 BODY.PEEK[HEADER]")[0]
    a.close()


def test_idle_reports_store_and_expunge_of_other_session(
        pair: tuple[RawImap, RawImap]) -> None:
    a, b = pair
    a.send(b"i IDLE\r\n")
    assert a.readline() == b"+ idling\r\n"
    b.cmd("x", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert a.readline() == b"* 2 FETCH (UID 2 FLAGS (\\Deleted))\r\n"
    b.cmd("y", "EXPUNGE")
    assert a.readline() == b"* 2 EXPUNGE\r\n"
    append(b)
    assert a.readline() == b"* 3 EXISTS\r\n"
    assert a.readline() == b"* 0 RECENT\r\n"
    a.send(b"DONE\r\n")
    assert a.readline() == b"i OK IDLE terminated\r\n"
    assert a.cmd("f", "FETCH 3 UID")[0] == b"* 3 FETCH (UID 4)\r\n"


def test_idle_needs_done_and_works_unselected(server: ServerThread) -> None:
    a = RawImap(server.port("imap"))
    a.login()
    a.send(b"i IDLE\r\n")
    assert a.readline() == b"+ idling\r\n"
    a.send(b"NOPE\r\n")
    assert a.readline().startswith(b"i BAD")
    assert a.cmd("n", "NOOP")[-1].startswith(b"n OK")
    a.send(b"j IDLE\r\n")
    assert a.readline() == b"+ idling\r\n"
    a.send(b"done\r\n")
    assert a.readline() == b"j OK IDLE terminated\r\n"
    a.close()


def test_selected_mailbox_deleted_by_other_session(server: ServerThread) -> None:
    a = RawImap(server.port("imap"))
    b = RawImap(server.port("imap"))
    a.login()
    b.login()
    a.cmd("c", "CREATE Box")
    a.cmd("s", "SELECT Box")
    assert b.cmd("d", "DELETE Box")[-1].startswith(b"d OK")
    a.send(b"n NOOP\r\n")
    lines = a.read_all()
    assert lines[0].startswith(b"* BYE")
    a.close()
    b.close()


def test_many_sessions_see_every_change(server: ServerThread) -> None:
    clients = [RawImap(server.port("imap")) for _ in range(5)]
    for c in clients:
        c.login()
        c.cmd("s", "SELECT INBOX")
    for i, c in enumerate(clients):
        append(c)
        c.cmd("n", "NOOP")
        c.cmd("st", f"UID STORE {i + 1} +FLAGS.SILENT ($K{i})")
    for c in clients:
        c.cmd("n", "NOOP")
        # Whichever session heard of a message first has it \Recent: ignore that here.
        lines = [x.replace(b"\\Recent ", b"").replace(b" \\Recent", b"")
                 for x in c.cmd("f", "FETCH 1:* (UID FLAGS)")]
        assert lines[:5] == [b"* %d FETCH (UID %d FLAGS ($K%d))\r\n" % (i + 1, i + 1, i)
                             for i in range(5)]
        c.close()
