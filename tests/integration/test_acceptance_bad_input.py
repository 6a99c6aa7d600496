"""Acceptance (issue #2 §7 "Bad input"): on both protocols each limit is crossed
once; the peer gets the protocol's error and the connection stays usable, or
is closed cleanly (IMAP BYE, RFC 3501 §7.1.5) where the RFC says so.

One server for the module, with small limits so each is cheap to cross.
Replies are read from raw sockets: what is checked is the wire.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
from collections.abc import Iterator

import pytest
from support.server import USERS, ServerThread, make_config, running_server
from support.wire import RawImap, RawSmtp

ALICE = "alice@example.test"
MAX_MESSAGE = 4096
MAX_RCPTS = 3
SMTP_LINE = 1000
IMAP_LINE = 2000
IMAP_LITERAL = 8192  # above MAX_MESSAGE: both caps get crossed

SMTP_REPLY = re.compile(rb"^[2-5]\d\d[ -][245]\.\d{1,3}\.\d{1,3}( |$)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(
        tmp_path_factory.mktemp("bad-input") / "data",
        max_message_size=MAX_MESSAGE,
        max_recipients=MAX_RCPTS,
        smtp_max_line_length=SMTP_LINE,
        smtp_max_data_line_length=SMTP_LINE,
        imap_max_line_length=IMAP_LINE,
        imap_max_literal_size=IMAP_LITERAL,
    )
    with running_server(config) as srv:
        yield srv


def inbox_count(server: ServerThread, account: str = ALICE) -> int:
    return server.call(server.store.get_mailbox, account, "INBOX").messages


@pytest.fixture
def smtp(server: ServerThread) -> Iterator[RawSmtp]:
    c = RawSmtp.greeted(server.port("smtp"))
    assert c.cmd("EHLO client.remote.test")[-1].startswith(b"250 ")
    yield c
    c.close()


def transaction_works(c: RawSmtp, subject: str = "still fine") -> None:
    """A whole MAIL/RCPT/DATA on the same connection, acknowledged 250."""
    assert c.cmd("RSET")[0].startswith(b"250 2.0.0")
    assert c.cmd("MAIL FROM:<x@remote.test>")[0].startswith(b"250 2.1.0")
    assert c.cmd("RCPT TO:<alice@example.test>")[0].startswith(b"250 2.1.5")
    assert c.cmd("DATA")[0].startswith(b"354 ")
    reply = c.cmd(f"Subject: {subject}\r\n\r\nok\r\n.".encode())
    assert reply[0].startswith(b"250 2.0.0 "), reply


# -- SMTP (RFC 5321 §4.2.4, §4.3.2, §4.5.3.1; RFC 1870; RFC 3463) ---------------------


def test_smtp_unknown_command(smtp: RawSmtp) -> None:
    reply = smtp.cmd("FROBNICATE now")
    assert reply[0][:3] == b"500" and SMTP_REPLY.match(reply[0]), reply
    transaction_works(smtp)


def test_smtp_bad_syntax_and_bad_sequence(smtp: RawSmtp) -> None:
    for line in ("MAIL FROM:x@remote.test>", "MAIL FROM:<>x", "MAIL", "RCPT TO:"):
        reply = smtp.cmd(line)
        assert reply[0][:3] in (b"501", b"503", b"555"), (line, reply)
        assert SMTP_REPLY.match(reply[0]), reply
    # §4.3.2: RCPT before MAIL, DATA before RCPT are out of sequence (503 5.5.1).
    assert smtp.cmd("RCPT TO:<alice@example.test>")[0].startswith(b"503 5.5.1")
    assert smtp.cmd("MAIL FROM:<x@remote.test>")[0].startswith(b"250 ")
    assert smtp.cmd("DATA")[0].startswith(b"503 5.5.1")
    assert smtp.cmd("MAIL FROM:<y@remote.test>")[0].startswith(b"503 5.5.1")  # nested MAIL
    transaction_works(smtp)


def test_smtp_path_without_closing_bracket_is_a_syntax_error(smtp: RawSmtp) -> None:
    """RFC 5321 §4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">"; Postfix answers 501."""
    reply = smtp.cmd("MAIL FROM:<x@remote.test")
    # 553 "mailbox syntax incorrect" (RFC 5321 §4.2.2) is as right as Postfix's 501.
    assert reply[0][:3] in (b"501", b"553"), reply
    smtp.cmd("RSET")
    smtp.cmd("MAIL FROM:<x@remote.test>")
    reply = smtp.cmd("RCPT TO:<alice@example.test")
    assert reply[0][:3] in (b"501", b"553"), reply


def test_smtp_over_long_command_line(smtp: RawSmtp, server: ServerThread) -> None:
    before = inbox_count(server)
    reply = smtp.cmd(b"NOOP " + b"x" * (SMTP_LINE * 4))
    assert reply[0].startswith(b"500 5.5.2"), reply
    transaction_works(smtp)
    assert inbox_count(server) == before + 1


def test_smtp_over_long_data_line(smtp: RawSmtp, server: ServerThread) -> None:
    before = inbox_count(server)
    smtp.cmd("MAIL FROM:<x@remote.test>")
    smtp.cmd("RCPT TO:<alice@example.test>")
    assert smtp.cmd("DATA")[0].startswith(b"354 ")
    reply = smtp.cmd(b"Subject: long\r\n\r\n" + b"y" * (SMTP_LINE + 10) + b"\r\n.")
    assert reply[0].startswith(b"500 5.5.2"), reply
    assert inbox_count(server) == before  # nothing half-stored
    transaction_works(smtp)


def test_smtp_message_over_size(smtp: RawSmtp, server: ServerThread) -> None:
    before = inbox_count(server)
    assert f"SIZE {MAX_MESSAGE}".encode() in b"\n".join(smtp.cmd("EHLO again.remote.test"))
    # Declared too big: refused at MAIL (RFC 1870 §6.1).
    reply = smtp.cmd(f"MAIL FROM:<x@remote.test> SIZE={MAX_MESSAGE + 1}")
    assert reply[0].startswith(b"552 5.3.4"), reply
    # Undeclared, and too big once received: refused after the final dot (§6.2).
    smtp.cmd("MAIL FROM:<x@remote.test>")
    smtp.cmd("RCPT TO:<alice@example.test>")
    smtp.cmd("DATA")
    reply = smtp.cmd(b"Subject: big\r\n\r\n" + (b"z" * 70 + b"\r\n") * 100 + b".")
    assert reply[0].startswith(b"552 5.3.4"), reply
    assert inbox_count(server) == before
    transaction_works(smtp)


def test_smtp_too_many_recipients(smtp: RawSmtp, server: ServerThread) -> None:
    before = inbox_count(server)
    smtp.cmd("MAIL FROM:<x@remote.test>")
    for _ in range(MAX_RCPTS):
        assert smtp.cmd("RCPT TO:<alice@example.test>")[0].startswith(b"250 ")
    # RFC 5321 §4.5.3.1.10: 452 (temporary) so the client retries the rest later.
    assert smtp.cmd("RCPT TO:<bob@example.test>")[0].startswith(b"452 4.5.3")
    assert smtp.cmd("DATA")[0].startswith(b"354 ")
    assert smtp.cmd(b"Subject: many\r\n\r\nx\r\n.")[0].startswith(b"250 2.0.0 ")
    # The same account named three times gets the message once (one INBOX copy).
    assert inbox_count(server) == before + 1
    transaction_works(smtp)


def test_smtp_unknown_user_and_relay(smtp: RawSmtp) -> None:
    smtp.cmd("MAIL FROM:<x@remote.test>")
    assert smtp.cmd("RCPT TO:<nobody@example.test>")[0].startswith(b"550 5.1.1")
    assert smtp.cmd("RCPT TO:<someone@elsewhere.test>")[0].startswith(b"550 5.7.1")
    assert smtp.cmd("RCPT TO:<alice@example.test>")[0].startswith(b"250 ")
    assert smtp.cmd("DATA")[0].startswith(b"354 ")
    assert smtp.cmd(b"Subject: mixed\r\n\r\nx\r\n.")[0].startswith(b"250 2.0.0 ")


def test_smtp_bare_lf_dot_does_not_end_data(smtp: RawSmtp, server: ServerThread) -> None:
    """SMTP smuggling: only CRLF.CRLF ends DATA (RFC 5321 §4.1.1.4); a bare
    "\\n.\\n" or "\\n.\\r\\n" inside must not split the message in two."""
    before = inbox_count(server)
    smtp.cmd("MAIL FROM:<x@remote.test>")
    smtp.cmd("RCPT TO:<alice@example.test>")
    smtp.cmd("DATA")
    smuggled = (b"Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@remote.test>\r\n"
                b"second\n.\r\nRCPT TO:<bob@example.test>\r\nend")
    reply = smtp.cmd(smuggled + b"\r\n.")
    # Either accepted as one message, or refused as a whole (Postfix-style 5xx).
    assert reply[0][:1] in (b"2", b"5") and SMTP_REPLY.match(reply[0]), reply
    assert inbox_count(server) in (before, before + 1)
    assert inbox_count(server, "bob@example.test") == 0
    assert smtp.cmd("NOOP")[0].startswith(b"250 ")


def test_smtp_client_vanishes_mid_data(server: ServerThread) -> None:
    before = inbox_count(server)
    c = RawSmtp.greeted(server.port("smtp"))
    c.cmd("EHLO client.remote.test")
    c.cmd("MAIL FROM:<x@remote.test>")
    c.cmd("RCPT TO:<alice@example.test>")
    c.cmd("DATA")
    c.sock.sendall(b"Subject: cut\r\n\r\nhalf a message")
    c.close()
    # The server is still serving, and nothing was stored for the cut transaction.
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        assert client.noop()[0] == 250
    assert inbox_count(server) == before


# -- IMAP (RFC 3501 §7.1, §9; RFC 7888; RFC 5530) ------------------------------------


@pytest.fixture
def imap(server: ServerThread) -> Iterator[RawImap]:
    c = RawImap(server.port("imap"))
    assert c.greeting.startswith(b"* OK")
    yield c
    c.close()


def login(c: RawImap) -> None:
    assert c.cmd("L", f'LOGIN {ALICE} "{USERS[ALICE]}"')[-1].startswith(b"L OK")


def still_usable(c: RawImap) -> None:
    assert c.cmd("Z1", "NOOP")[-1].startswith(b"Z1 OK")


def test_imap_unknown_command(imap: RawImap) -> None:
    assert imap.cmd("a1", "FROBNICATE")[-1].startswith(b"a1 BAD")
    assert imap.cmd("a2", "XYZZY 1 2 3")[-1].startswith(b"a2 BAD")
    still_usable(imap)
    login(imap)
    assert imap.cmd("a3", "FROBNICATE INBOX")[-1].startswith(b"a3 BAD")
    still_usable(imap)


def test_imap_command_in_wrong_state(imap: RawImap) -> None:
    # Not authenticated: mailbox and message commands are BAD (§6, state table).
    for i, line in enumerate(["SELECT INBOX", "LIST \"\" *", "FETCH 1 FLAGS", "IDLE"]):
        assert imap.cmd(f"n{i}", line)[-1].startswith(f"n{i} BAD".encode()), line
    login(imap)
    # Authenticated, nothing selected: selected-state commands are BAD; LOGIN again too.
    for i, line in enumerate(["FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "EXPUNGE",
                              "CLOSE", "SEARCH ALL", f"LOGIN {ALICE} x"]):
        assert imap.cmd(f"s{i}", line)[-1].startswith(f"s{i} BAD".encode()), line
    assert imap.cmd("sel", "SELECT INBOX")[-1].startswith(b"sel OK")
    still_usable(imap)


def test_imap_bad_sequence_sets(imap: RawImap) -> None:
    login(imap)
    imap.cmd("ap", "APPEND INBOX {14+}\r\nSubject: s\r\n\r\n")
    assert imap.cmd("sel", "SELECT INBOX")[-1].startswith(b"sel OK")
    for i, seq in enumerate(["0", "x", "1:", ":1", "1,,2", "1:*:2", "-1", "4294967296", "1 2"]):
        tag = f"b{i}"
        assert imap.cmd(tag, f"FETCH {seq} FLAGS")[-1].startswith(f"{tag} BAD".encode()), seq
    assert imap.cmd("ok", "FETCH 1:* FLAGS")[-1].startswith(b"ok OK")
    assert imap.cmd("uid", "UID FETCH 4000000000 FLAGS")[-1].startswith(b"uid OK")
    still_usable(imap)


def test_imap_oversize_synchronizing_literal(imap: RawImap, server: ServerThread) -> None:
    login(imap)
    before = inbox_count(server)
    # §7.5: the server refuses instead of sending "+"; RFC 5530 §3 TOOBIG.
    imap.send(f"t1 APPEND INBOX {{{IMAP_LITERAL + 1}}}\r\n".encode())
    reply = imap.until_tagged("t1")
    assert reply[-1].startswith((b"t1 NO", b"t1 BAD")), reply
    assert not any(line.startswith(b"+ ") for line in reply)
    # The client then does not send the literal; the connection carries on.
    still_usable(imap)
    assert inbox_count(server) == before


def test_imap_message_over_max_message_size_is_toobig(imap: RawImap, server: ServerThread) -> None:
    """A literal within the IMAP literal cap but over max_message_size (SIZE)
    is refused too: the two caps mean one thing for a message (APPEND)."""
    login(imap)
    before = inbox_count(server)
    size = MAX_MESSAGE + 1
    assert size <= IMAP_LITERAL
    imap.send(f"t2 APPEND INBOX {{{size}}}\r\n".encode())
    first = imap.readline()
    if first.startswith(b"+"):
        imap.send(b"x" * size + b"\r\n")
        first = imap.until_tagged("t2")[-1]
    assert first.startswith((b"t2 NO", b"t2 BAD")), first
    still_usable(imap)
    assert inbox_count(server) == before


def test_imap_oversize_non_synchronizing_literal_closes_cleanly(server: ServerThread) -> None:
    """RFC 7888 §4: a too-big LITERAL+ literal cannot be refused before it is
    sent, so the server may answer and close; it must say BYE first (§7.1.5)."""
    c = RawImap(server.port("imap"))
    assert c.greeting.startswith(b"* OK")
    try:
        login(c)
        c.send(f"t3 APPEND INBOX {{{IMAP_LITERAL * 3}+}}\r\n".encode())
        c.send(b"y" * (IMAP_LITERAL * 3) + b"\r\n")
        lines = c.read_all()
        assert any(line.startswith(b"* BYE") for line in lines), lines
        assert all(line.startswith((b"* ", b"t3 ")) for line in lines), lines
    finally:
        c.close()


def test_imap_over_long_line(imap: RawImap) -> None:
    login(imap)
    imap.send(b"t4 NOOP " + b"x" * (IMAP_LINE * 3) + b"\r\n")
    first = imap.readline()
    if first.startswith(b"* BYE"):  # closed cleanly, as §7.1.5 allows
        assert all(line.startswith((b"* ", b"t4 ")) for line in imap.read_all())
        return
    assert first.startswith((b"t4 BAD", b"* BAD")), first
    still_usable(imap)


def test_imap_over_long_line_at_the_limit_is_fine(imap: RawImap) -> None:
    login(imap)
    # A SEARCH just under the line limit is one command, not an error.
    line = "SEARCH " + " ".join(["ALL"] * ((IMAP_LINE - 40) // 4))
    assert len(line) < IMAP_LINE - 10
    imap.cmd("sel", "SELECT INBOX")
    assert imap.cmd("t5", line)[-1].startswith(b"t5 OK")


def test_imap_append_to_missing_mailbox_says_trycreate(server: ServerThread) -> None:
    client = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30)
    try:
        client.login(ALICE, USERS[ALICE])
        typ, data = client.append("No/Such/Box", None, None, b"Subject: x\r\n\r\nx\r\n")
        assert typ == "NO" and data[0].startswith(b"[TRYCREATE]"), (typ, data)  # §6.3.11
        assert client.create("No/Such/Box")[0] == "OK"
        typ, _ = client.append("No/Such/Box", None, None, b"Subject: x\r\n\r\nx\r\n")
        assert typ == "OK"
        assert client.select("No/Such/Box") == ("OK", [b"1"])
    finally:
        client.logout()


def test_imap_garbage_bytes_and_bad_grammar(imap: RawImap) -> None:
    login(imap)
    imap.send(b"\x00\xff\xfe garbage\r\n")
    assert imap.readline().startswith(b"* BAD")  # no tag could be read (§7.1.3)
    still_usable(imap)
    for i, line in enumerate([b'SELECT "unterminated', b"SELECT (INBOX", b"LIST",
                              b"STATUS INBOX (NOSUCHITEM)", b"STORE", b"APPEND",
                              b'LOGIN a "b"', b"SEARCH"]):
        tag = f"g{i}".encode()
        reply = imap.cmd(tag.decode(), line)
        assert reply[-1].startswith((tag + b" BAD", tag + b" NO")), (line, reply)
    still_usable(imap)


def test_imap_nul_line_still_consumes_its_literal(imap: RawImap) -> None:
    """RFC 7888 §4 / RFC 3501 §4.3: the octets of a ``{n+}`` literal are data
    whatever the server thinks of the command.  Here the literal holds
    "n2 LOGOUT": run as a command, it would log the session out."""
    login(imap)
    imap.send(b"n1 NOOP \x00 {11+}\r\nn2 LOGOUT\r\n\r\n")
    reply = imap.until_tagged("n1")
    assert reply[-1].startswith(b"n1 BAD"), reply
    reply = imap.cmd("n3", "NOOP")
    assert reply == [b"n3 OK NOOP completed\r\n"], reply


def test_imap_client_vanishes_mid_literal(server: ServerThread) -> None:
    before = inbox_count(server)
    c = RawImap(server.port("imap"))
    assert c.greeting.startswith(b"* OK")
    login(c)
    c.send(b"v APPEND INBOX {100}\r\n")
    assert c.readline().startswith(b"+")
    c.send(b"Subject: cut\r\n\r\nonly part")
    c.close()
    still = RawImap(server.port("imap"))
    assert still.greeting.startswith(b"* OK")
    try:
        login(still)
        still_usable(still)
    finally:
        still.close()
    assert inbox_count(server) == before
