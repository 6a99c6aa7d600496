"""SEARCH and UID SEARCH through the real server (RFC 3501 §6.4.4, §6.4.8)."""

from __future__ import annotations

import datetime as dt
import imaplib
from collections.abc import Iterator

import pytest
from imapclient import IMAPClient
from support.server import ServerThread, corpus_messages
from support.wire import client_tls_context

from mailserver.protocol.mime import analyze

ALICE = ("alice@example.test", "alice-secret")


def at(y: int, m: int, d: int, hh: int = 12) -> int:
    return int(dt.datetime(y, m, d, hh, tzinfo=dt.UTC).timestamp())


MESSAGES = [
    (
        b"From: Alice Example <alice@example.test>\r\n"
        b"To: Bob <bob@example.test>\r\n"
        b"Subject: Quarterly report\r\n"
        b"Date: Mon, 01 Jan 2024 09:00:00 +0000\r\n"
        b"X-Tracking: abc123\r\n"
        b"\r\n"
        b"Numbers attached. Apricot.\r\n",
        frozenset({"\\Seen"}),
        at(2024, 1, 1),
    ),
    (
        b"From: =?utf-8?q?J=C3=BCrgen?= <juergen@example.de>\r\n"
        b"To: alice@example.test\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"Date: Wed, 03 Jan 2024 09:00:00 +0000\r\n"
        b"\r\n"
        b"Kumquat season.\r\n",
        frozenset({"\\Flagged", "$Work"}),
        at(2024, 1, 3),
    ),
    (
        b"From: bob@example.test\r\n"
        b"To: alice@example.test\r\n"
        b"Subject: lunch?\r\n"
        b"Date: Fri, 05 Jan 2024 09:00:00 +0000\r\n"
        b"\r\n" + b"Pizza. " * 300 + b"\r\n",
        frozenset({"\\Deleted"}),
        at(2024, 1, 5),
    ),
]


@pytest.fixture
def uids(server: ServerThread) -> list[int]:
    out = []
    for blob, flags, when in MESSAGES:
        rec, _ = server.run(
            server.store.append(
                ALICE[0], "INBOX", blob, analyze(blob).to_bytes(), flags=flags, internal_date=when
            )
        )
        out.append(rec.uid)
    return out


@pytest.fixture
def raw(imaps: imaplib.IMAP4_SSL, uids: list[int]) -> imaplib.IMAP4_SSL:
    """imaplib (conftest ``imaps``) with the messages in INBOX, selected."""
    imaps.select("INBOX")
    return imaps


@pytest.fixture
def client(server: ServerThread, uids: list[int]) -> Iterator[IMAPClient]:
    c = IMAPClient("127.0.0.1", port=server.port("imaps"), ssl_context=client_tls_context())
    c.login(*ALICE)
    c.select_folder("INBOX")
    try:
        yield c
    finally:
        c.logout()


def seq_search(c: imaplib.IMAP4_SSL, criteria: str) -> list[int]:
    typ, data = c.search(None, criteria)
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("ALL", [1, 2, 3]),
        ("2:*", [2, 3]),
        ("*", [3]),
        ("1,3", [1, 3]),
        ("SEEN", [1]),
        ("UNSEEN", [2, 3]),
        ("FLAGGED", [2]),
        ("DELETED", [3]),
        ("UNDELETED", [1, 2]),
        ("KEYWORD $Work", [2]),
        ("UNKEYWORD $Work", [1, 3]),
        ("ANSWERED", []),
        ("FROM alice", [1]),
        ('FROM "Alice Example"', [1]),
        ("TO alice@example.test", [2, 3]),
        ("SUBJECT report", [1]),
        ("HEADER X-Tracking abc", [1]),
        ('HEADER X-Tracking ""', [1]),
        ("BODY apricot", [1]),
        ("TEXT quarterly", [1]),
        ("BODY quarterly", []),
        ("LARGER 1000", [3]),
        ("SMALLER 1000", [1, 2]),
        ("ON 3-Jan-2024", [2]),
        ("BEFORE 3-Jan-2024", [1]),
        ("SINCE 3-Jan-2024", [2, 3]),
        ("SENTON 05-Jan-2024", [3]),
        ("SENTBEFORE 03-Jan-2024", [1]),
        ("SENTSINCE 03-Jan-2024", [2, 3]),
        ("NOT SEEN", [2, 3]),
        ("OR SEEN FLAGGED", [1, 2]),
        ("NOT OR SEEN FLAGGED", [3]),
        ("(OR SEEN FLAGGED) SMALLER 300", [1, 2]),
        ("UNSEEN (OR FROM bob BODY kumquat)", [2, 3]),
        ("UNSEEN (FROM bob OR BODY kumquat SUBJECT nothing)", []),
        ("1:2 NOT (SEEN)", [2]),
    ],
)
def test_search_keys(raw: imaplib.IMAP4_SSL, criteria: str, expected: list[int]) -> None:
    assert seq_search(raw, criteria) == expected


def test_uid_search(raw: imaplib.IMAP4_SSL, uids: list[int]) -> None:
    typ, data = raw.uid("SEARCH", None, "UNSEEN")
    assert typ == "OK"
    assert [int(x) for x in data[0].split()] == uids[1:]
    typ, data = raw.uid("SEARCH", None, f"UID {uids[0]}:{uids[1]}")
    assert [int(x) for x in data[0].split()] == uids[:2]
    typ, data = raw.uid("SEARCH", None, "UID *")
    assert [int(x) for x in data[0].split()] == uids[-1:]
    typ, data = raw.uid("SEARCH", None, "2")
    assert [int(x) for x in data[0].split()] == uids[1:2]


def test_charset_utf8_search(client: IMAPClient, uids: list[int]) -> None:
    assert client.search(["SUBJECT", "grüße"], charset="UTF-8") == uids[1:2]
    assert client.search(["FROM", "JÜRGEN"], charset="UTF-8") == uids[1:2]
    assert client.search(["OR", "SEEN", ["BODY", "kumquat"]]) == uids[:2]
    assert client.search(["SINCE", dt.date(2024, 1, 4)]) == uids[2:]


def test_search_over_the_corpus(server: ServerThread) -> None:
    """Content keys run over every corpus message without error."""
    for path in corpus_messages():
        blob = path.read_bytes()
        server.run(
            server.store.append(
                "bob@example.test",
                "INBOX",
                blob,
                analyze(blob).to_bytes(),
                internal_date=at(2024, 1, 1),
            )
        )
    c = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=client_tls_context())
    try:
        c.login("bob@example.test", "bob-secret")
        c.select("INBOX")
        n = len(corpus_messages())
        assert seq_search(c, "ALL") == list(range(1, n + 1))
        hits = seq_search(c, 'OR TEXT "part specifier" HEADER Subject "hello"')
        assert 1 in hits and 69 in hits
        assert seq_search(c, "TEXT zzzzqqqq-not-anywhere") == []
        assert seq_search(c, "NOT BODY zzzzqqqq-not-anywhere") == list(range(1, n + 1))
    finally:
        c.logout()
