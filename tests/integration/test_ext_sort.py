"""SORT and UID SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO) over raw
sockets and with imapclient, on hand-made messages and on the whole corpus."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient
from support.server import ServerThread, corpus_messages
from support.wire import ALICE, RawImap

#: (subject, from, to, date, padding) per message, appended in this order.
MESSAGES = [
    ("Re: beta", '"Carol" <carol@x>', "zed@x", "Tue, 02 Jan 2024 10:00:00 +0000", 0),
    ("alpha", "Ann <ann@x>", "bob@x", "Mon, 01 Jan 2024 12:00:00 +0100", 300),
    ("[list] Beta", "bob@x", "amy@x", "Wed, 03 Jan 2024 10:00:00 +0000", 100),
    ("ALPHA (fwd)", "=?utf-8?q?=C3=89mile?= <ann@y>", "", None, 200),
]


def message(subject: str, from_: str, to: str, date: str | None, pad: int) -> bytes:
    head = f"Subject: {subject}\r\nFrom: {from_}\r\n"
    if to:
        head += f"To: {to}\r\n"
    if date:
        head += f"Date: {date}\r\n"
    return (head + "\r\n" + "x" * pad + "\r\n").encode()


def append_all(c: RawImap) -> None:
    for i, spec in enumerate(MESSAGES):
        data = message(*spec)
        when = f'"0{i + 1}-Feb-2024 00:00:00 +0000"'
        line = c.cmd("ap", f"APPEND INBOX {when} {{{len(data)}+}}\r\n".encode() + data)[-1]
        assert line.startswith(b"ap OK")


@pytest.fixture
def raw(raw_imap: RawImap) -> RawImap:
    c = raw_imap
    append_all(c)
    assert c.cmd("s", "SELECT INBOX")[-1].startswith(b"s OK")
    return c


def sort(c: RawImap, text: str) -> bytes:
    lines = c.cmd("t", text)
    assert lines[-1].startswith(b"t OK"), lines
    assert len(lines) == 2, lines
    return lines[0]


def test_capability(raw: RawImap) -> None:
    caps = raw.cmd("c", "CAPABILITY")[0].split()
    assert b"SORT" in caps and b"SORT=DISPLAY" in caps


@pytest.mark.parametrize(("criteria", "expected"), [
    ("ARRIVAL", b"* SORT 1 2 3 4\r\n"),
    ("REVERSE ARRIVAL", b"* SORT 4 3 2 1\r\n"),
    ("SIZE", b"* SORT 1 3 4 2\r\n"),
    ("SUBJECT", b"* SORT 2 4 1 3\r\n"),  # alpha, alpha (fwd); beta, [list] Beta
    ("SUBJECT REVERSE SIZE", b"* SORT 2 4 3 1\r\n"),
    ("FROM", b"* SORT 2 4 3 1\r\n"),  # ann, ann (mailbox only), bob, carol
    ("TO", b"* SORT 4 3 2 1\r\n"),  # none first, then amy, bob, zed
    ("CC", b"* SORT 1 2 3 4\r\n"),  # nobody has Cc: sequence order
    ("DATE", b"* SORT 2 1 3 4\r\n"),  # 4 has no Date: its INTERNALDATE (Feb) is latest
    ("REVERSE DATE", b"* SORT 4 3 1 2\r\n"),
    ("DISPLAYFROM", b"* SORT 2 3 1 4\r\n"),  # Ann, bob@x, Carol, Émile
    ("DISPLAYTO", b"* SORT 4 3 2 1\r\n"),
])
def test_sort_criteria(raw: RawImap, criteria: str, expected: bytes) -> None:
    assert sort(raw, f"SORT ({criteria}) UTF-8 ALL") == expected


def test_uid_sort_and_search_keys(raw: RawImap) -> None:
    raw.cmd("x", "STORE 2,3 +FLAGS.SILENT (\\Flagged)")
    assert sort(raw, "SORT (REVERSE SIZE) US-ASCII FLAGGED") == b"* SORT 2 3\r\n"
    assert sort(raw, "UID SORT (SUBJECT) UTF-8 NOT FLAGGED") == b"* SORT 4 1\r\n"
    assert sort(raw, 'SORT (ARRIVAL) UTF-8 SUBJECT "nothing like it"') == b"* SORT\r\n"
    # MODSEQ in the program adds the highest MODSEQ (RFC 7162 §3.1.5).
    line = sort(raw, "SORT (ARRIVAL) UTF-8 MODSEQ 1")
    assert line.startswith(b"* SORT 1 2 3 4 (MODSEQ ") and line.endswith(b")\r\n")


def test_sort_errors(server: ServerThread, raw: RawImap) -> None:
    assert raw.cmd("a", "SORT (SUBJECT) X-UNKNOWN ALL")[-1].startswith(b"a NO [BADCHARSET")
    assert raw.cmd("b", "SORT (BOGUS) UTF-8 ALL")[-1].startswith(b"b BAD")
    assert raw.cmd("c", "SORT SUBJECT UTF-8 ALL")[-1].startswith(b"c BAD")
    other = RawImap(server.port("imap"))
    other.login()
    assert other.cmd("d", "SORT (SUBJECT) UTF-8 ALL")[-1].startswith(b"d BAD")  # not selected
    other.close()


def test_sort_with_imapclient(server: ServerThread, raw: RawImap) -> None:
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        c.select_folder("INBOX")
        assert c.sort(["SUBJECT"]) == [2, 4, 1, 3]  # UIDs, same as sequence numbers here
        assert c.sort("REVERSE SIZE", ["NOT", "DELETED"]) == [2, 4, 3, 1]
        c.use_uid = False
        assert c.sort(["FROM", "REVERSE DATE"]) == [4, 2, 3, 1]


def test_sort_corpus(server: ServerThread) -> None:
    """Every corpus message sorts by every key; the result is a permutation."""
    paths = corpus_messages()
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        for p in paths:
            c.append("INBOX", p.read_bytes())
        c.select_folder("INBOX")
        n = len(paths)
        for key in ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM",
                    "DISPLAYTO"):
            got = c.sort([key])
            assert sorted(got) == list(range(1, n + 1)), key
            assert c.sort(["REVERSE " + key]) != [] and len(c.sort(["REVERSE " + key])) == n
        by_size = c.sort(["SIZE"])
        sizes = c.fetch(by_size, ["RFC822.SIZE"])
        ordered = [sizes[u][b"RFC822.SIZE"] for u in by_size]
        assert ordered == sorted(ordered)
