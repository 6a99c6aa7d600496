"""FETCH through the real server, with imaplib and imapclient (RFC 3501 §6.4.5, §7.4.2).

Corpus messages are put into the store with their exact bytes (imaplib's
APPEND rewrites bare LFs to CRLF, so it cannot carry them unchanged); one
test APPENDs over the wire too.
"""

from __future__ import annotations

import datetime as dt
import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from support.server import ServerThread, corpus_messages
from support.wire import client_tls_context

from mailserver.protocol.mime import analyze

ALICE = ("alice@example.test", "alice-secret")
WHEN = int(dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp())

SIMPLE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@example.test\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Body line one\r\n"
    b"Body line two\r\n"
)


def put(server: ServerThread, blob: bytes, flags: frozenset[str] = frozenset()) -> int:
    """Store ``blob`` unchanged in alice's INBOX; returns its UID."""
    rec, _ = server.run(
        server.store.append(
            ALICE[0], "INBOX", blob, analyze(blob).to_bytes(), flags=flags, internal_date=WHEN
        )
    )
    return rec.uid


def corpus(prefix: str) -> bytes:
    (path,) = [p for p in corpus_messages() if p.name.startswith(prefix)]
    return path.read_bytes()


@pytest.fixture
def client(server: ServerThread) -> Iterator[IMAPClient]:
    c = IMAPClient("127.0.0.1", port=server.port("imaps"), ssl_context=client_tls_context())
    c.login(*ALICE)
    try:
        yield c
    finally:
        c.logout()


def test_basic_items_and_exact_bytes(server: ServerThread, client: IMAPClient) -> None:
    uid = put(server, SIMPLE, frozenset({"$Label"}))
    client.select_folder("INBOX")
    got = client.fetch(
        [uid], ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY.PEEK[]", "ENVELOPE", "BODY"]
    )[uid]
    assert got[b"FLAGS"] == (b"\\Recent", b"$Label")  # first SELECT: recent (§2.3.2)
    assert got[b"RFC822.SIZE"] == len(SIMPLE)
    assert got[b"BODY[]"] == SIMPLE
    assert got[b"INTERNALDATE"].replace(tzinfo=None) == dt.datetime(2024, 3, 1, 12, 0)
    assert got[b"ENVELOPE"].subject == b"hello"
    assert got[b"BODY"][0].lower() == b"text"


def test_append_over_the_wire(imaps: imaplib.IMAP4_SSL) -> None:
    typ, _ = imaps.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(WHEN), SIMPLE)
    assert typ == "OK"
    imaps.select("INBOX")
    typ, data = imaps.fetch("1", "(FLAGS BODY.PEEK[] RFC822.SIZE)")
    assert typ == "OK"
    assert data[0][1] == SIMPLE
    assert b"\\Flagged" in data[0][0]
    assert b"RFC822.SIZE %d" % len(SIMPLE) in data[0][0] + data[1]


def test_peek_keeps_unseen_and_body_sets_seen(server: ServerThread, client: IMAPClient) -> None:
    uid = put(server, SIMPLE)
    client.select_folder("INBOX")
    client.fetch([uid], ["BODY.PEEK[]", "BODY.PEEK[TEXT]", "RFC822.HEADER"])
    assert client.get_flags([uid])[uid] == (b"\\Recent",)
    got = client.fetch([uid], ["BODY[TEXT]"])[uid]
    assert got[b"BODY[TEXT]"] == b"Body line one\r\nBody line two\r\n"
    assert b"\\Seen" in client.get_flags([uid])[uid]


def test_rfc822_sets_seen_and_examine_does_not(server: ServerThread, client: IMAPClient) -> None:
    uid = put(server, SIMPLE)
    client.select_folder("INBOX", readonly=True)
    client.fetch([uid], ["RFC822"])
    assert client.get_flags([uid])[uid] == (b"\\Recent",)  # EXAMINE shows, never claims
    client.select_folder("INBOX")
    got = client.fetch([uid], ["RFC822"])[uid]
    assert got[b"RFC822"] == SIMPLE
    assert b"\\Seen" in client.get_flags([uid])[uid]


def test_rfc2060_part_specifiers(server: ServerThread, client: IMAPClient) -> None:
    uid = put(server, corpus("069-"))
    client.select_folder("INBOX")
    specs = ["1", "2", "3.1", "3.2", "4.1", "4.2.1", "4.2.2.1", "4.2.2.2"]
    got = client.fetch([uid], [f"BODY.PEEK[{s}]" for s in specs])[uid]
    for s in specs:
        assert got[f"BODY[{s}]".encode()] == b"This part specifier should be: %s\n" % s.encode()
    got = client.fetch(
        [uid], ["BODY.PEEK[4.1.MIME]", "BODY.PEEK[3.HEADER]", "BODY.PEEK[4.2.TEXT]", "BODY.PEEK[9]"]
    )[uid]
    assert got[b"BODY[4.1.MIME]"] == b"Content-Type: IMAGE/GIF\n\n"
    assert got[b"BODY[3.HEADER]"].startswith(b"From: me@myself.com\n")
    assert got[b"BODY[3.HEADER]"].endswith(b"\n\n")
    assert got[b"BODY[4.2.TEXT]"].startswith(b"--4.2.x\n")
    assert got[b"BODY[9]"] is None
    bs = client.fetch([uid], ["BODYSTRUCTURE"])[uid][b"BODYSTRUCTURE"]
    assert bs.is_multipart and len(bs[0]) == 4


def test_header_fields_and_partials(server: ServerThread, imaps: imaplib.IMAP4_SSL) -> None:
    uid = put(server, SIMPLE)
    imaps.select("INBOX")
    typ, data = imaps.uid(
        "FETCH",
        str(uid),
        "(BODY.PEEK[HEADER.FIELDS (subject FROM)] BODY.PEEK[HEADER.FIELDS.NOT (From Subject)])",
    )
    assert typ == "OK"
    first, second = data[0], data[1]
    assert b"UID %d" % uid in first[0]
    assert b"BODY[HEADER.FIELDS (SUBJECT FROM)]" in first[0]
    assert first[1] == b"From: Alice <alice@example.test>\r\nSubject: hello\r\n\r\n"
    assert b"BODY[HEADER.FIELDS.NOT (FROM SUBJECT)]" in second[0]
    assert second[1] == b"To: bob@example.test\r\n\r\n"

    typ, data = imaps.uid("FETCH", str(uid), "(BODY.PEEK[]<6.5> BODY.PEEK[TEXT]<0.4>)")
    assert typ == "OK"
    assert b"BODY[]<6> {5}" in data[0][0] and data[0][1] == SIMPLE[6:11]
    assert b"BODY[TEXT]<0> {4}" in data[1][0] and data[1][1] == b"Body"
    typ, data = imaps.uid("FETCH", str(uid), "(BODY.PEEK[]<100000.5>)")
    assert typ == "OK"
    assert b'BODY[]<100000> ""' in data[0]


def test_uid_fetch_always_has_uid_and_modseq(server: ServerThread, imaps: imaplib.IMAP4_SSL) -> None:
    uid = put(server, SIMPLE)
    imaps.select("INBOX")
    typ, data = imaps.uid("FETCH", str(uid), "(FLAGS)")
    assert typ == "OK"
    assert data[0].startswith(b"1 (") and b"UID %d" % uid in data[0]
    typ, data = imaps.fetch("1", "(MODSEQ)")
    assert typ == "OK"
    assert b"MODSEQ (" in data[0]


def test_every_corpus_message(server: ServerThread, client: IMAPClient) -> None:
    """BODY[] is the exact bytes (NUL as 0x80), and ENVELOPE and BODYSTRUCTURE parse in imapclient."""
    paths: list[Path] = corpus_messages()
    uids = {put(server, p.read_bytes()): p for p in paths}
    client.select_folder("INBOX")
    got = client.fetch(list(uids), ["ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE"])
    assert set(got) == set(uids)
    for uid, path in uids.items():
        assert got[uid][b"RFC822.SIZE"] == path.stat().st_size, path.name
        assert got[uid][b"BODYSTRUCTURE"] is not None, path.name
    for uid, path in uids.items():
        body = client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
        # NUL is not a CHAR8 (RFC 3501 §9): sent as 0x80, same length.
        assert body == path.read_bytes().replace(b"\0", b"\x80"), path.name


def test_nested_header_fields_and_implicit_seen(
    server: ServerThread, imaps: imaplib.IMAP4_SSL
) -> None:
    uid = put(server, corpus("069-"))
    imaps.select("INBOX")
    typ, data = imaps.uid(
        "FETCH", str(uid), "(BODY.PEEK[3.HEADER.FIELDS (SUBJECT)] BODY.PEEK[4.2.1.MIME])"
    )
    assert typ == "OK"
    assert b"BODY[3.HEADER.FIELDS (SUBJECT)]" in data[0][0]
    assert data[0][1].startswith(b"Subject: This part specifier should be: 3\n")
    assert b"BODY[4.2.1.MIME]" in data[1][0]
    assert data[1][1] == b"Content-Type: TEXT/PLAIN\n\n"
    # A non-peek fetch reports the new \Seen flag in the same response (§6.4.5).
    typ, data = imaps.uid("FETCH", str(uid), "(BODY[1])")
    assert typ == "OK"
    text = b"".join(x[0] if isinstance(x, tuple) else x for x in data)
    assert b"\\Seen" in text
    assert data[0][1] == b"This part specifier should be: 1\n"
