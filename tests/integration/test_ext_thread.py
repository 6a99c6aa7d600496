"""THREAD=REFERENCES and THREAD=ORDEREDSUBJECT (RFC 5256 §4), UID THREAD,
over raw sockets and with imapclient; the corpus threads without error."""

from __future__ import annotations

import re

import pytest
from imapclient import IMAPClient
from support.server import ServerThread, corpus_messages
from support.wire import ALICE, RawImap

#: (subject, message-id, references, in-reply-to, date)
MESSAGES = [
    ("Plans", "<p1@x>", None, None, "Mon, 01 Jan 2024 10:00:00 +0000"),         # 1
    ("Re: Plans", "<p2@x>", "<p1@x>", None, "Mon, 01 Jan 2024 11:00:00 +0000"),  # 2
    ("Lunch?", "<l1@x>", None, None, "Mon, 01 Jan 2024 09:00:00 +0000"),        # 3
    ("Re: Plans", "<p3@x>", None, "<p2@x>", "Mon, 01 Jan 2024 12:00:00 +0000"),  # 4
    ("Re: Plans", "<p4@x>", "<p1@x>", None, "Mon, 01 Jan 2024 10:30:00 +0000"),  # 5
    ("Re: Lost", "<x1@x>", "<nothere@x>", None, "Tue, 02 Jan 2024 10:00:00 +0000"),  # 6
    ("Re: Lost", "<x2@x>", "<nothere@x>", None, "Tue, 02 Jan 2024 11:00:00 +0000"),  # 7
    ("Re: Lunch?", "<l2@x>", None, None, "Mon, 01 Jan 2024 09:30:00 +0000"),    # 8
]


def message(subject: str, mid: str, refs: str | None, irt: str | None, date: str) -> bytes:
    head = f"Subject: {subject}\r\nMessage-ID: {mid}\r\nDate: {date}\r\nFrom: a@x\r\n"
    if refs:
        head += f"References: {refs}\r\n"
    if irt:
        head += f"In-Reply-To: {irt}\r\n"
    return (head + "\r\nhi\r\n").encode()


@pytest.fixture
def raw(raw_imap: RawImap) -> RawImap:
    c = raw_imap
    for spec in MESSAGES:
        data = message(*spec)
        assert c.cmd("ap", f"APPEND INBOX {{{len(data)}+}}\r\n".encode() + data)[-1].startswith(
            b"ap OK")
    c.cmd("s", "SELECT INBOX")
    return c


def thread(c: RawImap, text: str) -> bytes:
    lines = c.cmd("t", text)
    assert lines[-1].startswith(b"t OK"), lines
    assert len(lines) == 2, lines
    return lines[0]


def test_capabilities(raw: RawImap) -> None:
    caps = raw.cmd("c", "CAPABILITY")[0].split()
    assert b"THREAD=REFERENCES" in caps and b"THREAD=ORDEREDSUBJECT" in caps


def test_references(raw: RawImap) -> None:
    # Lunch (09:00) with its subject-merged reply; Plans with 5 (10:30) before
    # 2 (11:00) -> 4; the two replies to a missing message under a dummy.
    assert thread(raw, "THREAD REFERENCES UTF-8 ALL") == (
        b"* THREAD (3 8)(1 (5)(2 4))((6)(7))\r\n")
    raw.cmd("x", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    # Without 1 its children hang from a dummy (a root with several children).
    assert thread(raw, "THREAD REFERENCES UTF-8 UNDELETED") == (
        b"* THREAD (3 8)((5)(2 4))((6)(7))\r\n")
    assert thread(raw, "THREAD REFERENCES UTF-8 SUBJECT nothing") == b"* THREAD\r\n"


def test_uid_thread_and_ordered_subject(raw: RawImap) -> None:
    raw.cmd("d", "STORE 3 +FLAGS.SILENT (\\Deleted)")
    assert raw.cmd("e", "EXPUNGE")[-1].startswith(b"e OK")
    # UIDs stay 1..8 with 3 gone; sequence numbers shift down above 3.
    assert thread(raw, "UID THREAD REFERENCES UTF-8 ALL") == (
        b"* THREAD (8)(1 (5)(2 4))((6)(7))\r\n")
    assert thread(raw, "THREAD ORDEREDSUBJECT UTF-8 ALL") == (
        b"* THREAD (7)(1 (4)(2)(3))(5 6)\r\n")


def test_thread_errors(raw: RawImap) -> None:
    assert raw.cmd("a", "THREAD REFERENCES X-BOGUS ALL")[-1].startswith(b"a NO [BADCHARSET")
    assert raw.cmd("b", "THREAD BOGUS UTF-8 ALL")[-1].startswith(b"b BAD")
    assert raw.cmd("c", "THREAD REFERENCES UTF-8")[-1].startswith(b"c BAD")


def test_thread_with_imapclient(server: ServerThread, raw: RawImap) -> None:
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        c.select_folder("INBOX")
        assert c.thread() == ((3, 8), (1, (5,), (2, 4)), ((6,), (7,)))
        assert c.thread("ORDEREDSUBJECT", ["NOT", "SUBJECT", "lost"]) == (
            (3, 8), (1, (5,), (2,), (4,)))


def test_thread_corpus(server: ServerThread) -> None:
    """Every corpus message appears exactly once in either algorithm's threads."""
    paths = corpus_messages()
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        for p in paths:
            c.append("INBOX", p.read_bytes())
    raw = RawImap(server.port("imap"))
    raw.login()
    raw.cmd("s", "SELECT INBOX")
    for alg in ("REFERENCES", "ORDEREDSUBJECT"):
        line = thread(raw, f"THREAD {alg} UTF-8 ALL")
        assert re.fullmatch(rb"\* THREAD[ 0-9()]*\r\n", line)
        numbers = sorted(int(n) for n in re.findall(rb"\d+", line))
        assert numbers == list(range(1, len(paths) + 1)), alg
        assert line.count(b"(") == line.count(b")")
    raw.close()
