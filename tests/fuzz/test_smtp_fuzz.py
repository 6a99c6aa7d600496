"""Hypothesis against the real SMTP listener: random and mutated command lines
sent over a raw socket in every transaction state (RFC 5321 §4.1.4: greeted,
after EHLO, after MAIL, after RCPT).

Property: every line gets a well-formed reply — three digits, and the
RFC 3463 enhanced code that ENHANCEDSTATUSCODES promises (RFC 2034 §3; the
EHLO/HELO replies are exempt) — and the connection then still answers NOOP,
unless the reply itself closed it on purpose (221 after QUIT, 421).  After
the fuzzing a normal transaction still works.  One server for the module.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from support.fuzzing import LINE_BYTES, mutated
from support.fuzzing import WIRE_FUZZ as FUZZ
from support.server import ServerThread, make_config, running_server
from support.wire import RawSmtp

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.smtp.command import parse_bdat

LINE_LIMIT = 1000
REPLY = re.compile(rb"^(\d{3})([ -])(.*)$", re.DOTALL)
ENHANCED = re.compile(rb"^[245]\.\d{1,3}\.\d{1,3}(?: |$)")

#: Valid lines the mutations start from: every verb, with and without arguments.
SEEDS = [
    b"EHLO client.remote.test", b"HELO client.remote.test", b"MAIL FROM:<x@remote.test>",
    b"MAIL FROM:<> SIZE=100 BODY=8BITMIME", b"MAIL FROM:<x@remote.test> SMTPUTF8",
    b"RCPT TO:<alice@example.test>", b"RCPT TO:<bob+tag@example.test>",
    b"RCPT TO:<nobody@elsewhere.test>", b"RCPT TO:<postmaster>", b"DATA", b"RSET", b"NOOP",
    b"NOOP with args", b"VRFY alice", b"EXPN list", b"HELP", b"HELP MAIL", b"QUIT",
    b"AUTH PLAIN AGFsaWNlAHg=", b"BDAT 10 LAST", b"STARTTLS", b"MAIL FROM:<a@b> AUTH=<>",
    b"RCPT TO:<alice@example.test> NOTIFY=NEVER",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(tmp_path_factory.mktemp("smtp-fuzz") / "data",
                         smtp_max_line_length=LINE_LIMIT, max_message_size=100_000,
                         max_connections_per_ip=1000)
    with running_server(config) as srv:
        yield srv


class Conn(RawSmtp):
    """``RawSmtp`` that fails on EOF, a timeout (a hang) or a malformed reply."""

    max_line = LINE_LIMIT * 4

    def reply(self) -> list[bytes]:
        lines = super().reply()
        assert lines, "no reply line: the server closed"
        for line in lines:
            assert REPLY.match(line) is not None, f"malformed reply line {line!r}"
        m = REPLY.match(lines[-1])
        assert m is not None and m.group(2) == b" ", f"no complete reply: {lines!r}"
        codes = {ln[:3] for ln in lines}
        assert len(codes) == 1, f"mixed codes in one reply: {lines!r}"
        return lines


def open_in_state(port: int, state: str) -> Conn:
    c = Conn(port)
    assert c.reply()[0].startswith(b"220 ")
    if state in ("ehlo", "mail", "rcpt"):
        assert c.cmd(b"EHLO fuzz.remote.test")[-1].startswith(b"250 ")
    if state in ("mail", "rcpt"):
        assert c.cmd(b"MAIL FROM:<x@remote.test>")[0].startswith(b"250 ")
    if state == "rcpt":
        assert c.cmd(b"RCPT TO:<alice@example.test>")[0].startswith(b"250 ")
    return c


def check_reply(line: bytes, reply: list[bytes]) -> None:
    code = reply[-1][:3]
    verb = line.split(b" ", 1)[0].upper()
    if code == b"250" and verb in (b"EHLO", b"HELO"):
        return  # RFC 2034 §3: no enhanced code on EHLO/HELO replies
    for text in reply:
        assert ENHANCED.match(text[4:]), f"{line!r} -> reply without enhanced code {reply!r}"


#: Largest BDAT chunk the fuzzer sends after a BDAT line it generated.
MAX_CHUNK = 100_000


def bdat_octets(line: bytes) -> int | None:
    """The octets the server reads after ``line`` if it is a BDAT command it parses
    (RFC 3030 §2: they follow the line at once); -1 for a BDAT line it cannot
    parse (answered, then the session ends: what follows is unknowable); None
    for any other line."""
    verb, _, arg = line.partition(b" ")
    if (verb.strip().upper() != b"BDAT" or len(line) + 2 > LINE_LIMIT
            or b"\r" in line or b"\n" in line):
        return None
    try:
        size, _ = parse_bdat(arg.decode("utf-8", "surrogateescape").strip() or None)
    except ProtocolSyntaxError:
        return -1
    return size


def exercise(port: int, state: str, line: bytes) -> None:
    """Send ``line`` in ``state``; check the reply and that the session goes on."""
    c = open_in_state(port, state)
    try:
        octets = bdat_octets(line)
        if octets is not None and octets > MAX_CHUNK:
            return  # the server would wait for that many octets; nothing to learn
        if octets is not None and octets >= 0:
            c.send(line + b"\r\n" + b"x" * octets)
            reply = c.reply()
        else:
            reply = c.cmd(line)
        if octets == -1:
            assert reply[-1][:3] == b"501" and c.eof(), (line, reply)
            return
        code = reply[-1][:3]
        if code in (b"221", b"421"):
            assert c.eof(), f"{line!r}: {code!r} must close the connection"
            return
        if code == b"220":  # STARTTLS accepted: a TLS handshake would come next
            assert line.upper().startswith(b"STARTTLS"), (line, reply)
            return
        if code == b"354":  # DATA accepted: end the (empty) message
            reply = c.cmd(b".")
            assert reply[-1][:1] in (b"2", b"4", b"5"), reply
            check_reply(b"", reply)
            assert c.cmd(b"NOOP")[-1].startswith(b"250 ")
            return
        if code == b"334":  # an AUTH challenge: cancel it (RFC 4954 §4)
            reply = c.cmd(b"*")
            assert reply[-1][:1] in (b"5", b"4"), reply
        check_reply(line, reply)
        assert code[:1] in (b"2", b"4", b"5"), (line, reply)
        noop = c.cmd(b"NOOP")
        assert noop[-1].startswith(b"250 "), (line, reply, noop)
    finally:
        c.close()


_MUTATED = mutated(SEEDS, max_repeat=60)
LINES = st.one_of(LINE_BYTES, _MUTATED, _MUTATED)
STATES = st.sampled_from(["greeted", "ehlo", "mail", "rcpt"])


@FUZZ
@given(state=STATES, line=LINES)
@example(state="greeted", line=b"BDAT 10 LAST")  # read and dropped, then 503
@example(state="mail", line=b"BDAT 10")
@example(state="rcpt", line=b"BDAT 3 LAST")
@example(state="greeted", line=b"BDAT \x0110 LAST")  # unparseable: 501 and hang up
def test_fuzzed_lines_in_every_state(server: ServerThread, state: str, line: bytes) -> None:
    exercise(server.port("smtp"), state, line)


@FUZZ
@given(lines=st.lists(LINES, min_size=2, max_size=6))
def test_pipelined_fuzz_answered_in_order(server: ServerThread, lines: list[bytes]) -> None:
    """RFC 2920 §3.1: several lines in one write get one reply each, in order,
    and the session is still alive afterwards."""
    lines = [ln for ln in lines if not ln.lstrip().split(b" ", 1)[0].upper().startswith(
        (b"DATA", b"QUIT", b"STARTTLS", b"AUTH", b"BDAT"))]
    c = open_in_state(server.port("smtp"), "ehlo")
    try:
        c.sock.sendall(b"".join(ln + b"\r\n" for ln in lines) + b"NOOP\r\n")
        for line in lines:
            reply = c.reply()
            assert reply[-1][:3] not in (b"221", b"354", b"334"), (line, reply)
            if reply[-1][:3] == b"421":
                return
            check_reply(line, reply)
        assert c.reply()[-1].startswith(b"250 ")
    finally:
        c.close()


def test_normal_transaction_after_fuzzing(server: ServerThread) -> None:
    body = b"Subject: after the fuzz\r\n\r\nstill here\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        assert client.sendmail("x@remote.test", ["alice@example.test"], body) == {}
    mailbox = server.call(server.store.get_mailbox, "alice@example.test", "INBOX")
    records = server.call(server.store.list_messages, mailbox.id)
    assert any(
        server.call(server.store.get_blob, r.blob_id).endswith(body) for r in records
    )
