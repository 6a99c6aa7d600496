"""IMAP writes that fold the ``\\Recent`` claim into their own commit
(RFC 3501 §2.3.2): APPEND and COPY into the session's selected mailbox are one
synced commit, and every message is still recent for exactly one session."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from contextlib import contextmanager

from support.server import ServerThread

ALICE = "alice@example.test"
PASSWORD = "alice-secret"
MSG = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


@contextmanager
def imap(server: ServerThread) -> Iterator[imaplib.IMAP4]:
    c = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        c.login(ALICE, PASSWORD)
        yield c
    finally:
        try:
            c.logout()
        except Exception:  # noqa: BLE001 - already gone
            pass


def last(c: imaplib.IMAP4, name: str) -> bytes:
    """The latest untagged ``name`` response (imaplib keeps them all)."""
    values = c.response(name)[1]
    assert values and values[-1] is not None, name
    return values[-1]


def commits(server: ServerThread) -> int:
    return int(server.call(lambda: server.store.commits))


def flags_of(c: imaplib.IMAP4, seq: int) -> bytes:
    typ, data = c.fetch(str(seq), "(FLAGS)")
    assert typ == "OK", data
    item = data[0]
    assert isinstance(item, bytes)
    return item


def test_append_to_selected_mailbox_is_one_commit(server: ServerThread) -> None:
    with imap(server) as a, imap(server) as b:
        assert a.select("INBOX")[0] == "OK"
        assert b.select("INBOX")[0] == "OK"
        before = commits(server)
        typ, data = a.append("INBOX", "(\\Seen)", None, MSG)
        assert typ == "OK", data
        assert commits(server) - before == 1  # the APPEND and its \Recent claim together
        assert last(a, "EXISTS") == b"1"
        assert b"\\Recent" in flags_of(a, 1)
        assert b"\\Seen" in flags_of(a, 1)
        assert b.noop()[0] == "OK"
        assert b"\\Recent" not in flags_of(b, 1)  # exactly one session has it recent
        assert commits(server) - before == 1  # b's sync found nothing left to claim


def test_append_claims_earlier_unseen_arrivals_too(server: ServerThread) -> None:
    """A message another session added, which nobody has seen yet, is claimed
    with the APPEND (the first session to see it gets it), exactly once."""
    with imap(server) as a, imap(server) as b:
        assert a.select("INBOX")[0] == "OK"
        assert b.append("INBOX", None, None, MSG)[0] == "OK"  # b has nothing selected
        assert a.append("INBOX", None, None, MSG + b"2")[0] == "OK"
        assert last(a, "EXISTS") == b"2"
        assert b"\\Recent" in flags_of(a, 1)
        assert b"\\Recent" in flags_of(a, 2)
        assert b.select("INBOX")[0] == "OK"
        assert last(b, "RECENT") == b"0"


def test_append_to_other_mailbox_claims_nothing(server: ServerThread) -> None:
    with imap(server) as a, imap(server) as b:
        assert a.select("INBOX")[0] == "OK"
        assert a.append("Drafts", None, None, MSG)[0] == "OK"
        assert b.select("Drafts")[0] == "OK"
        assert last(b, "RECENT") == b"1"  # b is the first to see it


def test_append_from_read_only_view_claims_nothing(server: ServerThread) -> None:
    with imap(server) as a, imap(server) as b:
        assert a.select("INBOX", readonly=True)[0] == "OK"
        assert a.append("INBOX", None, None, MSG)[0] == "OK"
        assert b"\\Recent" in flags_of(a, 1)  # EXAMINE sees it above the boundary
        assert b.select("INBOX")[0] == "OK"
        assert last(b, "RECENT") == b"1"  # and the boundary did not move


def test_rev2_session_append_claims_nothing(server: ServerThread) -> None:
    with imap(server) as a, imap(server) as b:
        assert a._simple_command("ENABLE", "IMAP4rev2")[0] == "OK"
        assert a.select("INBOX")[0] == "OK"
        assert a.append("INBOX", None, None, MSG)[0] == "OK"
        assert b"\\Recent" not in flags_of(a, 1)  # RFC 9051 has no \Recent
        assert b.select("INBOX")[0] == "OK"
        assert last(b, "RECENT") == b"1"


def test_copy_into_selected_mailbox_is_one_commit(server: ServerThread) -> None:
    with imap(server) as a, imap(server) as b:
        assert a.append("INBOX", None, None, MSG)[0] == "OK"
        assert a.select("INBOX")[0] == "OK"
        assert b.select("INBOX")[0] == "OK"
        before = commits(server)
        typ, data = a.copy("1", "INBOX")
        assert typ == "OK", data
        assert commits(server) - before == 1
        assert last(a, "EXISTS") == b"2"
        assert b"\\Recent" in flags_of(a, 2)
        assert b.noop()[0] == "OK"
        assert b"\\Recent" not in flags_of(b, 2)
        assert commits(server) - before == 1
