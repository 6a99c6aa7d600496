"""SMTP (port-25 role) to local delivery, checked in the store.

Real server (the ``server`` fixture), real clients (smtplib); the store is
read back through its public methods on the server's loop.
"""

from __future__ import annotations

import re
import smtplib
from pathlib import Path

import pytest
from support.wire import client_tls_context

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"

ALICE = "alice@example.test"
BOB = "bob@example.test"
RECEIVED = re.compile(
    rb"\AReceived: from \S+ \(\[127\.0\.0\.1\]\)\r\n"
    rb"(?:\t\(using TLSv1\.[23] with cipher [A-Z0-9_-]+ \(\d+/\d+ bits\)\)\r\n)?"
    rb"\tby mx\.example\.test with (ESMTPS?A?|SMTP) id ([0-9A-Z]{17})(?:\r\n\tfor <[^>]+>)?;\r\n"
    rb"\t[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n"
)


def smtp_normalise(data: bytes) -> bytes:
    """CRLF line ends and a final CRLF: what smtplib sends for a ``str`` message.

    (For ``bytes`` smtplib only dot-stuffs, also after a bare LF, which is not a
    line end in SMTP; so the tests normalise first and send the result.)
    """
    data = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def inbox(server, account: str) -> list:
    mailbox = server.call(server.store.get_mailbox, account, "INBOX")
    return server.call(server.store.list_messages, mailbox.id)


def stored_bytes(server, record) -> bytes:
    return record.prefix + server.call(server.store.get_blob, record.blob_id)


def split_received(blob: bytes) -> tuple[re.Match[bytes], bytes]:
    """The Received field's match and the bytes after it."""
    m = RECEIVED.match(blob)
    assert m is not None, blob[:300]
    return m, blob[m.end() :]


def test_delivery_to_local_user(server):
    body = b"From: x@remote.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.ehlo("client.remote.test")
        client.mail("x@remote.test")
        client.rcpt(ALICE)
        code, text = client.data(body)
    assert code == 250
    assert re.fullmatch(rb"2\.0\.0 Ok: queued as [0-9A-Z]{17}", text), text
    [record] = inbox(server, ALICE)
    assert record.prefix == b"Return-Path: <x@remote.test>\r\nDelivered-To: alice@example.test\r\n"
    blob = server.call(server.store.get_blob, record.blob_id)
    m, rest = split_received(blob)
    assert rest == body
    assert m.group(1) == b"ESMTP"
    assert text.endswith(m.group(2))
    assert b"for <alice@example.test>;" in blob[: m.end()]
    assert blob.startswith(b"Received: from client.remote.test ([127.0.0.1])")
    assert record.size == len(record.prefix) + len(blob)


def test_received_records_tls_version_and_cipher(server):
    """Under STARTTLS the Received field says which TLS, as Postfix does."""
    body = b"Subject: tls\r\n\r\nHello.\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.starttls(context=client_tls_context())
        version, (cipher, _, bits) = client.sock.version(), client.sock.cipher()
        client.sendmail("x@remote.test", [ALICE], body)
    [record] = inbox(server, ALICE)
    blob = server.call(server.store.get_blob, record.blob_id)
    m, rest = split_received(blob)
    assert rest == body and m.group(1) == b"ESMTPS"
    assert f"\t(using {version} with cipher {cipher} ({bits}/{bits} bits))\r\n".encode() \
        in blob[: m.end()]


def test_multiple_recipients_share_one_blob(server):
    body = b"Subject: to both\r\n\r\nHi both.\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        refused = client.sendmail("x@remote.test", [ALICE, BOB], body)
    assert refused == {}
    [a] = inbox(server, ALICE)
    [b] = inbox(server, BOB)
    assert a.blob_id == b.blob_id
    assert a.prefix.endswith(b"Delivered-To: alice@example.test\r\n")
    assert b.prefix.endswith(b"Delivered-To: bob@example.test\r\n")
    blob = server.call(server.store.get_blob, a.blob_id)
    m, rest = split_received(blob)
    assert rest == body
    assert b"for <" not in blob[: m.end()]  # several recipients: none named (RFC 5321 §4.4)


def test_null_reverse_path(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.ehlo()
        assert client.docmd("MAIL FROM:<>")[0] == 250
        assert client.rcpt(ALICE)[0] == 250
        assert client.data(b"Subject: bounce\r\n\r\nx\r\n")[0] == 250
    [record] = inbox(server, ALICE)
    assert record.prefix.startswith(b"Return-Path: <>\r\n")


def test_unknown_user_and_relay_refused(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.ehlo()
        assert client.mail("x@remote.test") == (250, b"2.1.0 Sender ok")
        code, text = client.rcpt("nobody@example.test")
        assert (code, text[:6]) == (550, b"5.1.1 ")
        code, text = client.rcpt("someone@elsewhere.test")
        assert (code, text[:6]) == (550, b"5.7.1 ")
        code, text = client.rcpt("nobody@EXAMPLE.TEST")  # domain case-insensitive
        assert code == 550
        # No recipient accepted: DATA is out of sequence.
        code, text = client.docmd("DATA")
        assert (code, text[:6]) == (503, b"5.5.1 ")
        assert client.noop()[0] == 250


def test_alias_and_plus_tag(server):
    server.run(server.store.add_alias("info@example.test", ALICE))
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.sendmail("x@remote.test", ["info@example.test"], b"Subject: 1\r\n\r\n1\r\n")
        client.sendmail("x@remote.test", ["Alice+news@example.test"], b"Subject: 2\r\n\r\n2\r\n")
        # Three forward-paths, one account: one copy, Delivered-To the first.
        client.sendmail(
            "x@remote.test",
            ["alice+a@example.test", ALICE, "info@example.test"],
            b"Subject: 3\r\n\r\n3\r\n",
        )
    records = inbox(server, ALICE)
    assert [r.prefix.split(b"\r\n")[1] for r in records] == [
        b"Delivered-To: info@example.test",
        b"Delivered-To: Alice+news@example.test",
        b"Delivered-To: alice+a@example.test",
    ]
    assert inbox(server, BOB) == []


def test_quota_full_mailbox(server):
    server.add_user("carol@example.test", "carol-secret", quota=300)
    big = b"Subject: big\r\n\r\n" + b"x" * 400 + b"\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.ehlo()
        client.mail("x@remote.test")
        assert client.rcpt("carol@example.test")[0] == 250
        code, text = client.data(big)
        assert (code, text[:6]) == (552, b"5.2.2 ")
        # Nothing was stored; a small message still fits.
        assert client.sendmail("x@remote.test", ["carol@example.test"], b"S: s\r\n\r\ns\r\n") == {}
    assert len(inbox(server, "carol@example.test")) == 1


def test_every_corpus_message_is_stored_byte_for_byte(server_factory):
    # Default limits: the corpus' 7 kB lines are within the DATA line limit.
    server = server_factory()
    paths = sorted((CORPUS / "messages").glob("*.eml"))
    assert len(paths) == 148, f"corpus missing at {CORPUS}"
    sent: list[bytes] = []
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        for path in paths:
            data = smtp_normalise(path.read_bytes())
            refused = client.sendmail("sender@remote.test", [BOB], data)
            assert refused == {}, path.name
            sent.append(data)
    records = inbox(server, BOB)
    assert len(records) == len(paths)
    for path, record, expected in zip(paths, records, sent, strict=True):
        stored = stored_bytes(server, record)
        prefix = b"Return-Path: <sender@remote.test>\r\nDelivered-To: bob@example.test\r\n"
        assert stored.startswith(prefix), path.name
        _, rest = split_received(stored[len(prefix) :])
        assert rest == expected, path.name


@pytest.mark.parametrize("name", ["037-very-long-body-lines-7kb.eml"])
def test_corpus_message_over_line_limit_is_refused_cleanly(server_factory, name):
    server = server_factory(smtp_max_data_line_length=4096)
    data = smtp_normalise((CORPUS / "messages" / name).read_bytes())
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("x@remote.test", [BOB], data)
        assert info.value.smtp_code == 500
        assert info.value.smtp_error.startswith(b"5.5.2 ")
        assert client.sendmail("x@remote.test", [BOB], b"Subject: ok\r\n\r\nok\r\n") == {}
    assert len(inbox(server, BOB)) == 1
