"""Acceptance (issue #2 §7): every corpus message, delivered over SMTP, reads back
over IMAP exactly as sent plus our trace fields, through two real IMAP clients.

What BODY[] must be (RFC 3501 §6.4.5, RFC 5321 §4.4):

    Return-Path: <sender>            per-delivery prefix (final delivery)
    Delivered-To: alice@example.test
    Received: from HELO ([127.0.0.1]) by mx.example.test with ESMTP id QUEUEID
        for <alice@example.test>; DATE
    <the bytes smtplib put on the wire, un-dot-stuffed: CRLF-normalised>

RFC822.SIZE equals len(BODY[]) (RFC 3501 §2.3.4), and imapclient parses every
ENVELOPE and BODYSTRUCTURE (§7.4.2).  One server per test, with the default
limits (the corpus' 7 kB lines are within the DATA line limit).
"""

from __future__ import annotations

import asyncio
import email.utils
import imaplib
import re
import smtplib
from pathlib import Path

import aiosmtplib
from imapclient import IMAPClient
from imapclient.response_types import BodyData, Envelope
from support.server import USERS

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
ALICE = "alice@example.test"
SENDER = "sender@remote.test"
PREFIX = f"Return-Path: <{SENDER}>\r\nDelivered-To: {ALICE}\r\n".encode()
RECEIVED = re.compile(
    rb"Received: from (?P<helo>[^\s]+) \(\[127\.0\.0\.1\]\)\r\n"
    rb"\tby mx\.example\.test with (?P<with>ESMTPS?A?) id (?P<id>[0-9A-Z]{17})\r\n"
    rb"\tfor <alice@example\.test>;\r\n"
    rb"\t(?P<date>[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4})\r\n"
)


def corpus_paths() -> list[Path]:
    paths = sorted((CORPUS / "messages").glob("*.eml"))
    assert len(paths) == 148, f"shared corpus missing or incomplete at {CORPUS}"
    return paths


def smtp_normalise(data: bytes) -> bytes:
    """What an SMTP client transmits for ``data`` (before dot-stuffing): every
    CRLF, bare LF and bare CR becomes CRLF, and the data ends with CRLF
    (RFC 5321 §2.3.8, §4.1.1.4).  Sending the normalised bytes makes the
    expectation exact whatever the client does with bare line ends."""
    data = re.sub(rb"\r\n|\n|\r", b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def check_trace(body: bytes, sent: bytes, name: str, helo: bytes) -> bytes:
    """Assert BODY[] == prefix + Received + sent; return the queue id.

    NUL octets come back as 0x80: a literal may not carry NUL (RFC 3501 §9,
    CHAR8), so FETCH BODY[] substitutes it as Dovecot does (the stored bytes
    are unchanged; BINARY[] returns them).
    """
    assert body.startswith(PREFIX), (name, body[:200])
    m = RECEIVED.match(body, len(PREFIX))
    assert m is not None, (name, body[len(PREFIX) : len(PREFIX) + 300])
    assert m["helo"] == helo, name
    assert email.utils.parsedate_to_datetime(m["date"].decode()) is not None
    assert body[m.end() :] == sent.replace(b"\0", b"\x80"), name
    return m["id"].decode()


def deliver_all(port: int, paths: list[Path]) -> list[bytes]:
    sent: list[bytes] = []
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.remote.test") as client:
        for path in paths:
            data = smtp_normalise(path.read_bytes())
            assert client.sendmail(SENDER, [ALICE], data) == {}, path.name
            sent.append(data)
    return sent


def imaplib_bodies(port: int) -> dict[int, tuple[bytes, int]]:
    """seq -> (BODY[], RFC822.SIZE) via imaplib, one FETCH per message."""
    out: dict[int, tuple[bytes, int]] = {}
    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.login(ALICE, USERS[ALICE])
        typ, data = imap.select("INBOX", readonly=True)
        assert typ == "OK"
        count = int(data[0])
        for seq in range(1, count + 1):
            typ, data = imap.fetch(str(seq), "(RFC822.SIZE BODY.PEEK[])")
            assert typ == "OK", data
            head, body = data[0]
            m = re.search(rb"RFC822\.SIZE (\d+)", head + b"".join(
                d if isinstance(d, bytes) else d[0] for d in data[1:]))
            assert m is not None, head
            out[seq] = (body, int(m.group(1)))
        imap.close()
    finally:
        imap.logout()
    return out


def test_corpus_round_trip_smtplib_imaplib_imapclient(server_factory):
    server = server_factory()
    paths = corpus_paths()
    sent = deliver_all(server.port("smtp"), paths)

    # imaplib: BODY.PEEK[] and RFC822.SIZE, message by message.
    bodies = imaplib_bodies(server.port("imap"))
    assert sorted(bodies) == list(range(1, len(paths) + 1))
    queue_ids = set()
    for seq, (path, data) in enumerate(zip(paths, sent, strict=True), start=1):
        body, size = bodies[seq]
        assert size == len(body), path.name
        queue_ids.add(check_trace(body, data, path.name, b"client.remote.test"))
    assert len(queue_ids) == len(paths), "queue ids must be distinct"

    # imapclient: all at once; ENVELOPE and BODYSTRUCTURE must parse.
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as client:
        client.login(ALICE, USERS[ALICE])
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        assert uids == list(range(1, len(paths) + 1))
        fetched = client.fetch(
            uids, ["UID", "FLAGS", "RFC822.SIZE", "BODY.PEEK[]", "ENVELOPE", "BODYSTRUCTURE"]
        )
    for uid, path, data in zip(uids, paths, sent, strict=True):
        item = fetched[uid]
        body = item[b"BODY[]"]
        assert body == bodies[uid][0] and body.endswith(data.replace(b"\0", b"\x80")), path.name
        assert item[b"RFC822.SIZE"] == len(body), path.name
        assert b"\\Seen" not in item[b"FLAGS"], path.name  # PEEK never sets \Seen
        env = item[b"ENVELOPE"]
        assert isinstance(env, Envelope), path.name
        bs = item[b"BODYSTRUCTURE"]
        assert isinstance(bs, BodyData), path.name
        # A multipart's first element is a list of parts; a leaf's is its type.
        if bs.is_multipart:
            assert isinstance(bs[0], list) and bs[0], path.name
        else:
            assert isinstance(bs[0], bytes) and bs[0], path.name


def test_corpus_envelope_subject_matches_simple_messages(server_factory):
    """A spot check of ENVELOPE content, not only its shape (RFC 3501 §7.4.2)."""
    server = server_factory()
    msg = (b"From: Ann Example <ann@remote.test>\r\nTo: alice@example.test\r\n"
           b"Subject: Envelope check\r\nMessage-ID: <e1@remote.test>\r\n"
           b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nbody\r\n")
    deliver_all_bytes(server.port("smtp"), [msg])
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as client:
        client.login(ALICE, USERS[ALICE])
        client.select_folder("INBOX")
        env = client.fetch([1], ["ENVELOPE"])[1][b"ENVELOPE"]
    assert env.subject == b"Envelope check"
    assert env.message_id == b"<e1@remote.test>"
    assert env.from_[0].name == b"Ann Example"
    assert env.from_[0].mailbox == b"ann" and env.from_[0].host == b"remote.test"
    assert env.to[0].mailbox == b"alice" and env.to[0].host == b"example.test"
    assert env.date is not None and env.date.year == 1994


def deliver_all_bytes(port: int, messages: list[bytes]) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.remote.test") as client:
        for msg in messages:
            assert client.sendmail(SENDER, [ALICE], msg) == {}


# A handful of awkward ones: 8-bit, NUL bytes, bare CR, BOM, leading "From ",
# long lines, deep nesting.  Picked by name pattern so the list stays honest.
AIOSMTPLIB_PICKS = ("001-", "008-", "037-", "065-", "119-", "148-")


def test_corpus_handful_via_aiosmtplib(server_factory):
    server = server_factory()
    paths = [p for p in corpus_paths() if p.name.startswith(AIOSMTPLIB_PICKS)]
    assert len(paths) == len(AIOSMTPLIB_PICKS)
    sent = [smtp_normalise(p.read_bytes()) for p in paths]

    async def send_all() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port("smtp"),
                                 local_hostname="aio.remote.test", start_tls=False)
        async with client:
            for data in sent:
                errors, reply = await client.sendmail(SENDER, [ALICE], data)
                assert errors == {}, reply
                assert reply.startswith("2.0.0 "), reply

    asyncio.run(send_all())
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as client:
        client.login(ALICE, USERS[ALICE])
        client.select_folder("INBOX", readonly=True)
        fetched = client.fetch(client.search("ALL"), ["BODY.PEEK[]", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE"])
    assert sorted(fetched) == list(range(1, len(paths) + 1))
    for uid, path, data in zip(sorted(fetched), paths, sent, strict=True):
        body = fetched[uid][b"BODY[]"]
        assert fetched[uid][b"RFC822.SIZE"] == len(body)
        check_trace(body, data, path.name, b"aio.remote.test")
