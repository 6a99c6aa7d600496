"""SMTP on the wire: extensions, enhanced codes, pipelining, limits, TLS, shutdown.

``RawSmtp`` (tests/support/wire.py) where the exact bytes matter, smtplib elsewhere.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import socket

import pytest
from support.wire import RawSmtp, client_tls_context

from mailserver.protocol.line_endings import to_crlf

ALICE = "alice@example.test"
BOB = "bob@example.test"
ENHANCED = re.compile(rb"^(\d)\d\d[ -](\d)\.\d{1,3}\.\d{1,3} ")


def ehlo_keywords(lines: list[bytes]) -> set[bytes]:
    return {line[4:] for line in lines[1:]}


def test_greeting_and_ehlo_keywords(raw_smtp, server):
    c = raw_smtp()
    [greeting] = c.reply()
    assert greeting.startswith(b"220 mx.example.test ")
    assert not ENHANCED.match(greeting)  # RFC 2034 §3: no code in the greeting
    lines = c.cmd("EHLO client.test")
    assert lines[0] == b"250-mx.example.test"
    assert all(not ENHANCED.match(line) for line in lines)
    keywords = ehlo_keywords(lines)
    size = server.config.limits.max_message_size
    assert {b"PIPELINING", b"8BITMIME", b"SMTPUTF8", b"ENHANCEDSTATUSCODES", b"STARTTLS"} <= keywords
    assert f"SIZE {size}".encode() in keywords
    assert not any(k.startswith(b"AUTH") for k in keywords)  # port 25: no AUTH
    assert c.cmd("AUTH PLAIN AGFsaWNlAHg=")[0].startswith(b"502 5.5.1 ")


def test_enhanced_code_on_every_reply(raw_smtp):
    c = raw_smtp()
    c.reply()
    commands = [
        "NOOP",
        "MAIL FROM:<x@remote.test>",  # before EHLO: 503
        "HELP",
        "EHLO client.test",
        "RCPT TO:<alice@example.test>",  # before MAIL: 503
        "MAIL FROM:<x@remote.test>",
        "MAIL FROM:<y@remote.test>",  # nested: 503
        "RCPT TO:<alice@example.test>",
        "RCPT TO:<nobody@example.test>",
        "RCPT TO:<x@elsewhere.test>",
        "RCPT TO:<not an address>",
        "RCPT TO:<bob@example.test> FOO=BAR",
        "VRFY alice",
        "EXPN staff",
        "RSET",
        "DATA",
        "STARTTLS now",
        "MAIL FROM:<x@remote.test> SIZE=abc",
        "RSET",
        "BOGUS",
        "QUIT",
    ]
    for command in commands:
        lines = c.cmd(command)
        assert lines, command
        if command.startswith("EHLO"):
            continue
        for line in lines:
            m = ENHANCED.match(line)
            assert m, (command, line)
            assert m.group(1) == m.group(2), (command, line)  # class matches the reply code
    assert c.eof()


def test_pipelined_commands_are_answered_in_order(raw_smtp, server):
    c = raw_smtp()
    c.reply()
    c.cmd("EHLO client.test")
    c.send(
        b"MAIL FROM:<x@remote.test>\r\n"
        b"RCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\n"
        b"RCPT TO:<bob@example.test>\r\n"
        b"DATA\r\n"
    )
    replies = [c.reply() for _ in range(5)]
    assert [r[0][:9] for r in replies] == [
        b"250 2.1.0",
        b"250 2.1.5",
        b"550 5.1.1",
        b"250 2.1.5",
        b"354 End d",
    ]
    # The message and the next commands in one write, too (RFC 2920 §3.1).
    c.send(b"Subject: p\r\n\r\npipelined\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    assert c.reply()[0].startswith(b"250 2.0.0 Ok: queued as ")
    assert c.reply() == [b"250 2.0.0 OK"]
    assert c.reply() == [b"250 2.0.0 OK"]
    assert c.reply()[0].startswith(b"221 2.0.0")
    assert c.eof()
    for account in (ALICE, BOB):
        mailbox = server.call(server.store.get_mailbox, account, "INBOX")
        assert len(server.call(server.store.list_messages, mailbox.id)) == 1


def test_starttls_then_mail(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.starttls(context=client_tls_context())
        code, text = client.ehlo("client.test")
        assert code == 250
        keywords = text.decode().split("\n")
        assert "STARTTLS" not in keywords
        assert not any(k.startswith("AUTH") for k in keywords)
        assert client.docmd("STARTTLS")[0] == 503
        assert client.sendmail("x@remote.test", [ALICE], b"Subject: tls\r\n\r\nsecret\r\n") == {}
    mailbox = server.call(server.store.get_mailbox, ALICE, "INBOX")
    [record] = server.call(server.store.list_messages, mailbox.id)
    blob = server.call(server.store.get_blob, record.blob_id)
    assert b" with ESMTPS id " in blob.split(b";", 1)[0]


def test_failed_starttls_handshake_closes_only_that_connection(raw_smtp):
    c = raw_smtp()
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("STARTTLS")[0].startswith(b"220 2.0.0 ")
    c.send(b"this is not a TLS ClientHello\r\n" * 20)
    c.read_to_eof()  # whatever alert comes back, the server must hang up
    other = raw_smtp()
    assert other.reply()[0].startswith(b"220 ")
    assert other.cmd("NOOP") == [b"250 2.0.0 OK"]


def test_helo_and_plain_smtp(server):
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        assert client.helo("old.client.test")[0] == 250
        assert client.sendmail("x@remote.test", [ALICE], b"Subject: old\r\n\r\nx\r\n") == {}
    mailbox = server.call(server.store.get_mailbox, ALICE, "INBOX")
    [record] = server.call(server.store.list_messages, mailbox.id)
    blob = server.call(server.store.get_blob, record.blob_id)
    assert blob.startswith(
        b"Received: from old.client.test ([127.0.0.1])\r\n\tby mx.example.test with SMTP id "
    )


def test_bad_commands_keep_the_connection_usable(raw_smtp):
    c = raw_smtp()
    c.reply()
    assert c.cmd("EHLO client.test")[-1].startswith(b"250 ")
    assert c.cmd("FROB")[0].startswith(b"500 5.5.2 ")
    assert c.cmd("EXPN list")[0].startswith(b"502 5.5.1 ")
    assert c.cmd("MAIL TO:<x@remote.test>")[0].startswith(b"501 5.5.4 ")
    assert c.cmd("")[0].startswith(b"500 5.5.2 ")
    assert c.cmd("\xe9t\xe9")[0].startswith(b"500 5.5.2 ")
    assert c.cmd("NOOP") == [b"250 2.0.0 OK"]


def test_too_many_unknown_commands_closes_with_421(server) -> None:
    """aiosmtpd hangs up after five unknown commands; the closing reply is a 421
    (RFC 5321 §3.8), so a pipelining client knows the channel is gone."""
    c = RawSmtp(server.port("smtp"))
    try:
        c.reply()
        c.cmd(b"EHLO client.test")
        c.sock.sendall(b"\x00EHLO x\r\n" * 5 + b"NOOP\r\n")
        replies = [c.reply() for _ in range(5)]
        assert all(r[0].startswith(b"500 5.5.2 ") for r in replies[:4])
        assert replies[4] == [b"421 4.7.0 Too many unrecognized commands, closing connection"]
        assert c.reply() == []  # closed; the pipelined NOOP is not answered
    finally:
        c.close()


def test_over_long_command_line(raw_smtp, server):
    limit = server.config.limits.smtp_max_line_length
    c = raw_smtp()
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("NOOP " + "x" * (limit + 100))[0].startswith(b"500 5.5.2 ")
    # Just under the limit (CRLF included) is still a command.
    assert c.cmd("NOOP " + "x" * (limit - 7)) == [b"250 2.0.0 OK"]
    assert c.cmd("RCPT TO:<" + "a" * limit + "@example.test>")[0].startswith(b"500 5.5.2 ")
    assert c.cmd("NOOP") == [b"250 2.0.0 OK"]


def test_over_long_data_line_is_refused_then_usable(raw_smtp, server):
    limit = server.config.limits.smtp_max_data_line_length
    c = raw_smtp()
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.test>")
    assert c.cmd("DATA")[0].startswith(b"354 ")
    c.send(b"Subject: long\r\n\r\n" + b"y" * (limit * 3) + b"\r\nmore\r\n.\r\n")
    assert c.reply()[0].startswith(b"500 5.5.2 ")
    # The transaction is over; a new one works on the same connection.
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.test>")
    c.cmd("DATA")
    c.send(b"Subject: short\r\n\r\nok\r\n.\r\n")
    assert c.reply()[0].startswith(b"250 2.0.0 ")
    mailbox = server.call(server.store.get_mailbox, ALICE, "INBOX")
    assert len(server.call(server.store.list_messages, mailbox.id)) == 1


def test_data_bytes_are_kept_as_received_but_bare_lf(raw_smtp, server):
    """Bare LF and bare CR are content, not line ends: "\\n.\\n" cannot end DATA
    (no SMTP smuggling); only CRLF "." CRLF ends it.  Once received, a bare LF
    is stored as CRLF (issue #12: every size counts CRLF); everything else,
    bare CR, NUL and 8-bit octets included, is kept as received."""
    body = (
        b"Subject: raw\r\n\r\nbare lf\nbare cr\rnul\x00 8bit \xe9\r\n"
        b"smuggle\n.\nMAIL FROM:<evil@remote.test>\r\n"
        b"..dot-stuffed line\r\n"
    )
    c = raw_smtp()
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<x@remote.test> BODY=8BITMIME")
    c.cmd("RCPT TO:<alice@example.test>")
    c.cmd("DATA")
    c.send(body + b".\r\n")
    assert c.reply()[0].startswith(b"250 2.0.0 ")
    assert c.cmd("QUIT")[0].startswith(b"221 ")
    mailbox = server.call(server.store.get_mailbox, ALICE, "INBOX")
    [record] = server.call(server.store.list_messages, mailbox.id)
    blob = server.call(server.store.get_blob, record.blob_id)
    assert blob.endswith(to_crlf(body.replace(b"\r\n..dot", b"\r\n.dot")))
    assert b"bare lf\r\nbare cr\rnul\x00 8bit \xe9\r\nsmuggle\r\n.\r\nMAIL" in blob


def test_smtputf8_addresses(raw_smtp, server):
    server.run(server.store.add_alias("j\u00f6rg@example.test", BOB))
    c = raw_smtp()
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<s\u00e9nder@remote.test> SMTPUTF8")[0].startswith(b"250 2.1.0")
    assert c.cmd("RCPT TO:<j\u00f6rg@example.test>")[0].startswith(b"250 2.1.5")
    c.cmd("DATA")
    c.send("Subject: gr\u00fc\u00dfe\r\n\r\nhi\r\n.\r\n".encode())
    assert c.reply()[0].startswith(b"250 2.0.0 ")
    mailbox = server.call(server.store.get_mailbox, BOB, "INBOX")
    [record] = server.call(server.store.list_messages, mailbox.id)
    assert (
        record.prefix
        == "Return-Path: <s\u00e9nder@remote.test>\r\nDelivered-To: j\u00f6rg@example.test\r\n".encode()
    )
    blob = server.call(server.store.get_blob, record.blob_id)
    assert b" with UTF8SMTP id " in blob


def test_size_limit_at_mail_and_on_data(server_factory):
    server = server_factory(max_message_size=1000)
    c = RawSmtp(server.port("smtp"))
    try:
        c.reply()
        assert b"SIZE 1000" in ehlo_keywords(c.cmd("EHLO client.test"))
        assert c.cmd("MAIL FROM:<x@remote.test> SIZE=1001")[0].startswith(b"552 5.3.4 ")
        assert c.cmd("MAIL FROM:<x@remote.test> SIZE=900")[0].startswith(b"250 2.1.0 ")
        c.cmd("RCPT TO:<alice@example.test>")
        c.cmd("DATA")
        c.send(
            b"Subject: big\r\n\r\n"
            + b"z" * 70
            + b"\r\n" * 1
            + (b"z" * 70 + b"\r\n") * 20
            + b".\r\n"
        )
        assert c.reply()[0].startswith(b"552 5.3.4 ")
        assert c.cmd("NOOP") == [b"250 2.0.0 OK"]
    finally:
        c.close()
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        assert client.sendmail("x@remote.test", [ALICE], b"Subject: small\r\n\r\nok\r\n") == {}
    mailbox = server.call(server.store.get_mailbox, ALICE, "INBOX")
    assert len(server.call(server.store.list_messages, mailbox.id)) == 1


def test_recipient_limit(server_factory):
    server = server_factory(max_recipients=2)
    server.add_user("carol@example.test", "carol-secret")
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.ehlo()
        client.mail("x@remote.test")
        assert client.rcpt(ALICE)[0] == 250
        assert client.rcpt(BOB)[0] == 250
        code, text = client.rcpt("carol@example.test")
        assert (code, text[:6]) == (452, b"4.5.3 ")
        assert client.data(b"Subject: two\r\n\r\nx\r\n")[0] == 250
    for account, count in ((ALICE, 1), (BOB, 1), ("carol@example.test", 0)):
        mailbox = server.call(server.store.get_mailbox, account, "INBOX")
        assert len(server.call(server.store.list_messages, mailbox.id)) == count


def test_idle_timeout(server_factory):
    server = server_factory(smtp_idle_timeout=0.5)
    c = RawSmtp(server.port("smtp"))
    try:
        c.reply()
        c.cmd("EHLO client.test")
        # Say nothing: the server must give up on us with a 421 and close.
        [line] = c.reply()
        assert line.startswith(b"421 4.4.2 ")
        assert c.eof()
    finally:
        c.close()


def test_connection_limits(server_factory):
    server = server_factory(max_connections_per_ip=1)
    first = RawSmtp(server.port("smtp"))
    second = RawSmtp(server.port("smtp"))
    other_listener = RawSmtp(server.port("submission"))  # limits are per listener
    try:
        assert first.reply()[0].startswith(b"220 ")
        [line] = second.reply()
        assert line.startswith(b"421 4.7.0 ")
        assert second.eof()
        assert other_listener.reply()[0].startswith(b"220 ")
        assert first.cmd("NOOP") == [b"250 2.0.0 OK"]
    finally:
        for c in (first, second, other_listener):
            c.close()


def test_total_connection_limit(server_factory):
    server = server_factory(max_connections=1)
    first = RawSmtp(server.port("smtp"))
    second = RawSmtp(server.port("smtp"))
    try:
        assert first.reply()[0].startswith(b"220 ")
        assert second.reply()[0].startswith(b"421 4.7.0 ")
    finally:
        first.close()
        second.close()


def test_shutdown_lets_data_finish(server, raw_smtp):
    idle = raw_smtp()
    busy = raw_smtp()
    idle.reply()
    busy.reply()
    idle.cmd("EHLO idle.test")
    busy.cmd("EHLO busy.test")
    busy.cmd("MAIL FROM:<x@remote.test>")
    busy.cmd("RCPT TO:<alice@example.test>")
    assert busy.cmd("DATA")[0].startswith(b"354 ")
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    handle = server.app.listeners["smtp"]
    done = asyncio.run_coroutine_threadsafe(handle.shutdown(30), server.loop)
    assert idle.reply()[0].startswith(b"421 4.3.2 ")
    assert idle.eof()
    busy.send(b"second half\r\n.\r\n")
    assert busy.reply()[0].startswith(b"250 2.0.0 ")
    assert busy.reply()[0].startswith(b"421 4.3.2 ")
    assert busy.eof()
    done.result(30)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", handle.port), timeout=5).close()
    mailbox = server.call(server.store.get_mailbox, ALICE, "INBOX")
    [record] = server.call(server.store.list_messages, mailbox.id)
    assert server.call(server.store.get_blob, record.blob_id).endswith(
        b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n"
    )


def test_a_command_line_that_never_ends_is_answered_at_the_limit(raw_smtp, server):
    """Issue 12 §3: the 500 comes when the limit is reached, not at an LF that may
    never come; the rest of the line is dropped as it arrives, then the session goes on."""
    limit = server.config.limits.smtp_max_line_length
    c = raw_smtp()
    c.reply()
    c.cmd("EHLO client.test")
    c.send(b"NOOP " + b"x" * limit)  # no LF
    assert c.reply()[0].startswith(b"500 5.5.2 ")
    for _ in range(20):
        c.send(b"x" * 65536)  # still the same line: no second reply, nothing kept
    assert c.cmd("\r\nNOOP")[0] == b"250 2.0.0 OK"


def test_starttls_drops_what_was_pipelined_in_the_clear(raw_smtp):
    """RFC 3207 §4.2 (CVE-2011-0411): commands sent with STARTTLS, before the
    handshake, must not run inside the TLS session."""
    c = raw_smtp()
    c.reply()
    c.cmd("EHLO client.test")
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
    assert c.reply()[0].startswith(b"220 ")
    c.start_tls()
    c.cmd("EHLO client.test")
    assert c.cmd(f"RCPT TO:<{ALICE}>")[0].startswith(b"503 5.5.1 ")  # no MAIL ran


def test_a_half_closed_client_gets_its_replies(server):
    """A client that sends its commands and shuts down its side (nc -N) is answered."""
    with socket.create_connection(("127.0.0.1", server.port("smtp")), timeout=10) as sock:
        sock.sendall(b"EHLO client.test\r\nNOOP\r\nQUIT\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert b"\r\n250 2.0.0 OK\r\n" in data and data.endswith(b"221 2.0.0 Bye\r\n")


def test_unknown_command_limit_is_configurable(server_factory):
    srv = server_factory(smtp_max_unknown_commands=2)
    c = RawSmtp(srv.port("smtp"))
    try:
        c.reply()
        assert c.cmd("FROB")[0].startswith(b"500 5.5.2 ")
        assert c.cmd("FROB")[0].startswith(b"421 4.7.0 ")
        assert c.reply() == []
    finally:
        c.close()


def test_help_vrfy_and_parameters_outside_esmtp(raw_smtp):
    c = raw_smtp()
    c.reply()
    help_all = c.cmd("HELP")[0]
    assert help_all.startswith(b"250 2.0.0 Supported commands: ") and b"MAIL" in help_all
    assert c.cmd("HELP mail")[0].startswith(b"250 2.0.0 Syntax: MAIL FROM:<address>")
    assert c.cmd("HELP FROB")[0].startswith(b"501 5.5.4 ")
    assert c.cmd("VRFY alice")[0].startswith(b"252 2.5.0 ")
    assert c.cmd("HELO old.client.test")[0] == b"250 mx.example.test"
    # RFC 5321 §4.1.2: no ESMTP parameters without EHLO.
    assert c.cmd("MAIL FROM:<a@remote.test> SIZE=10")[0].startswith(b"501 5.5.4 ")
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<a@remote.test> BODY=9BIT")[0].startswith(b"501 5.5.4 ")
    assert c.cmd("MAIL FROM:<a@remote.test> X-UNKNOWN=1")[0].startswith(b"555 5.5.4 ")
    assert c.cmd("MAIL FROM:<a@remote.test> BODY=8BITMIME SIZE=10")[0].startswith(b"250 ")
    assert c.cmd("MAIL FROM:<b@remote.test>")[0].startswith(b"503 5.5.1 ")  # nested
