"""CHUNKING and BINARYMIME (RFC 3030) on the wire: BDAT, pipelined, with its errors."""

from __future__ import annotations

import re
from typing import Any

from support.wire import RawSmtp

ALICE = "alice@example.test"


def stored(server: Any, account: str = ALICE) -> list[bytes]:
    """The messages in ``account``'s INBOX, without our Received: field (the
    first field and its continuation lines)."""
    mailbox = server.call(server.store.get_mailbox, account, "INBOX")
    out = []
    for record in server.call(server.store.list_messages, mailbox.id):
        blob = server.call(server.store.get_blob, record.blob_id)
        assert blob.startswith(b"Received: ")
        out.append(re.sub(rb"\A[^\r]*\r\n(?:[ \t][^\r]*\r\n)*", b"", blob, count=1))
    return out


def transaction(c: RawSmtp, body: str = "") -> None:
    assert c.cmd("EHLO client.test")[-1].startswith(b"250 ")
    assert c.cmd(f"MAIL FROM:<sender@remote.test>{body}")[0].startswith(b"250 ")
    assert c.cmd(f"RCPT TO:<{ALICE}>")[0].startswith(b"250 ")


def test_chunking_is_offered(raw_smtp: Any) -> None:
    c = raw_smtp()
    c.reply()
    keywords = {line[4:] for line in c.cmd("EHLO client.test")[1:]}
    assert {b"CHUNKING", b"BINARYMIME"} <= keywords


def test_pipelined_chunks_are_answered_in_order_and_stored_as_sent(raw_smtp: Any,
                                                                   server: Any) -> None:
    c = raw_smtp()
    c.reply()
    transaction(c)
    first = b"Subject: chunks\r\n\r\nline one\r\n.leading dot\r\n"
    second = b"line two\r\n"
    # Both chunks and a NOOP in one write (RFC 3030 §2: pipelined BDAT).
    c.send(b"BDAT %d\r\n%sBDAT %d LAST\r\n%sNOOP\r\n" % (len(first), first, len(second), second))
    assert c.reply() == [b"250 2.0.0 %d octets received" % len(first)]
    assert c.reply()[0].startswith(b"250 2.0.0 Ok: queued as ")
    assert c.reply() == [b"250 2.0.0 OK"]
    assert stored(server) == [first + second]  # no dot-stuffing to undo: as sent


def test_a_chunk_split_over_many_writes(raw_smtp: Any, server: Any) -> None:
    c = raw_smtp()
    c.reply()
    transaction(c)
    body = b"Subject: slow\r\n\r\n" + b"x" * 5000 + b"\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(body))
    for i in range(0, len(body), 700):
        c.send(body[i:i + 700])
    assert c.reply()[0].startswith(b"250 2.0.0 Ok: queued as ")
    assert stored(server) == [body]


def test_binarymime_only_with_bdat_and_byte_exact(raw_smtp: Any, server: Any) -> None:
    c = raw_smtp()
    c.reply()
    transaction(c, " BODY=BINARYMIME")
    assert c.cmd("DATA")[0].startswith(b"503 5.5.1 ")  # RFC 3030 §3
    body = (b"Subject: bin\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n" + bytes(range(256)) + b"\n\r.\r\n")
    c.send(b"BDAT %d LAST\r\n" % len(body) + body)
    assert c.reply()[0].startswith(b"250 2.0.0 Ok: queued as ")
    assert stored(server) == [body]


def test_bdat_out_of_sequence_is_consumed_and_refused(raw_smtp: Any) -> None:
    c = raw_smtp()
    c.reply()
    c.cmd("EHLO client.test")
    # The 20 octets are read and dropped (RFC 3030 §2), not run as commands.
    c.send(b"BDAT 20 LAST\r\nQUIT\r\nQUIT\r\nQUIT\r\nQU")
    assert c.reply()[0].startswith(b"503 5.5.1 ")
    assert c.cmd("NOOP") == [b"250 2.0.0 OK"]
    assert c.cmd("BDAT 0 LAST")[0].startswith(b"503 5.5.1 ")


def test_data_after_bdat_and_bdat_zero_last(raw_smtp: Any, server: Any) -> None:
    c = raw_smtp()
    c.reply()
    transaction(c)
    body = b"Subject: z\r\n\r\nbody\r\n"
    c.send(b"BDAT %d\r\n" % len(body) + body)
    assert c.reply()[0].startswith(b"250 2.0.0 ")
    assert c.cmd("DATA")[0].startswith(b"503 5.5.1 ")  # not in one transaction with BDAT
    assert c.cmd("BDAT 0 LAST")[0].startswith(b"250 2.0.0 Ok: queued as ")
    assert stored(server) == [b"Subject: z\r\n\r\nbody\r\n"]


def test_too_much_data_fails_the_transaction_until_rset(server_factory: Any) -> None:
    srv = server_factory(max_message_size=2000)
    c = RawSmtp(srv.port("smtp"))
    try:
        c.reply()
        transaction(c)
        c.send(b"BDAT 1500\r\n" + b"a" * 1500)
        assert c.reply()[0].startswith(b"250 ")
        c.send(b"BDAT 1500\r\n" + b"b" * 1500)
        assert c.reply()[0].startswith(b"552 5.3.4 ")
        c.send(b"BDAT 10 LAST\r\n" + b"c" * 10)
        assert c.reply()[0].startswith(b"503 5.5.1 ")  # the transaction failed
        assert c.cmd("RSET")[0].startswith(b"250 ")
        transaction(c)
        c.send(b"BDAT 11 LAST\r\nSubject: ok")
        assert c.reply()[0].startswith(b"250 2.0.0 Ok: queued as ")
    finally:
        c.close()


def test_a_bad_bdat_line_ends_the_session(raw_smtp: Any) -> None:
    """After an unreadable chunk size, what follows cannot be told from commands."""
    c = raw_smtp()
    c.reply()
    transaction(c)
    assert c.cmd("BDAT ten LAST")[0].startswith(b"501 5.5.4 ")
    assert c.reply() == []
