"""Receiver framing: literals, continuations, limits, recovery after errors.

Every case is fed whole, one byte at a time, and followed by another command
(``feed_all_ways``); all three must give the same events.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.imap_receiver import TRAILER, Err, corpus_messages, feed_all_ways, run

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.imap.receiver import Receiver, Receiving, read_tag
from mailserver.protocol.imap.types import (
    NEED_DATA,
    Append,
    Authenticate,
    Command,
    Line,
    Login,
    NeedContinuation,
    NoArgs,
)

NC = NeedContinuation

CASES = [
    ("crlf", b"a1 NOOP\r\n", [Command("a1", "NOOP")]),
    ("bare lf", b"a1 NOOP\n", [Command("a1", "NOOP")]),
    ("two commands", b"a1 NOOP\r\na2 CAPABILITY\n", [Command("a1", "NOOP"), Command("a2", "CAPABILITY")]),
    ("lower-case name", b"x noop\r\n", [Command("x", "NOOP")]),
    ("odd tag", b"A.b]-_/1 NOOP\r\n", [Command("A.b]-_/1", "NOOP")]),
    (
        "sync literals",
        b"a1 LOGIN {3}\r\nbob {2}\r\npw\r\n",
        [NC("a1", 3), NC("a1", 2), Command("a1", "LOGIN", Login("bob", "pw"))],
    ),
    (
        "non-sync literals (RFC 7888)",
        b"a1 LOGIN {3+}\r\nbob {2+}\r\npw\r\n",
        [Command("a1", "LOGIN", Login("bob", "pw"))],
    ),
    (
        "mixed literals",
        b"a1 LOGIN {3+}\r\nbob {2}\r\npw\r\n",
        [NC("a1", 2), Command("a1", "LOGIN", Login("bob", "pw"))],
    ),
    (
        "literal holding CRLF and a literal announcement",
        b"a1 APPEND x {9}\r\nA\r\n{3}\r\nB\r\n",
        [NC("a1", 9), Command("a1", "APPEND", Append("x", b"A\r\n{3}\r\nB"))],
    ),
    (
        "zero-length literal",
        b"a1 LOGIN {0}\r\n {0+}\r\n\r\n",
        [NC("a1", 0), Command("a1", "LOGIN", Login("", ""))],
    ),
    (
        "literal8 (RFC 3516)",
        b"a1 APPEND x ~{3}\r\n\x00\xff\n\r\n",
        [NC("a1", 3), Command("a1", "APPEND", Append("x", b"\x00\xff\n", binary=True))],
    ),
    (
        "literal with bare LF line ends",
        b"a1 APPEND x {2+}\nab\n",
        [Command("a1", "APPEND", Append("x", b"ab"))],
    ),
    (
        "idle then DONE",
        b"a1 IDLE\r\nDONE\r\na2 NOOP\r\n",
        [Command("a1", "IDLE"), Line(b"DONE"), Command("a2", "NOOP")],
    ),
    (
        "authenticate response lines",
        b"a1 AUTHENTICATE PLAIN\r\nAGJvYgBwdw==\r\n",
        [Command("a1", "AUTHENTICATE", Authenticate("PLAIN")), Line(b"AGJvYgBwdw==")],
    ),
    (
        "a line of {n} in raw Line mode is not a literal",
        b"a1 IDLE\r\n{5}\r\n",
        [Command("a1", "IDLE"), Line(b"{5}")],
    ),
    # ---- errors, each followed by recovery (the trailer) ----
    ("unknown command", b"a1 FROB\r\n", [Err("a1")]),
    ("empty line", b"\r\n", [Err(None)]),
    ("no command", b"a1\r\n", [Err("a1")]),
    ("tag only and space", b"a1 \r\n", [Err("a1")]),
    ("bad tag", b"+ NOOP\r\n", [Err(None)]),
    ("bad tag star", b"* NOOP\r\n", [Err(None)]),
    ("NUL in line", b"a1 LOGIN a\x00 b\r\n", [Err("a1")]),
    ("extra args", b"a1 NOOP now\r\n", [Err("a1")]),
    ("double space", b"a1  NOOP\r\n", [Err("a1")]),
    ("trailing space", b"a1 NOOP \r\n", [Err("a1")]),
    (
        "error in the line after a literal",
        b"a1 LOGIN {3}\r\nbob x y\r\n",
        [NC("a1", 3), Err("a1")],
    ),
    ("sync literal after a bad tag gets no continuation", b"(x {3}\r\n", [Err(None)]),
    ("literal where an atom is wanted", b"a1 FETCH {1+}\r\n1 FLAGS\r\n", [Err("a1")]),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_framing(data: bytes, expected: list[object]) -> None:
    assert feed_all_ways(data) == expected


LIMIT_CASES = [
    (
        "line over max_line, tag known",
        b"a1 LOGIN " + b"x" * 100 + b" y\r\n",
        [Err("a1")],
    ),
    ("line over max_line, no tag", b"x" * 200 + b"\r\n", [Err(None)]),
    (
        "line exactly max_line",
        b"a1 LOGIN " + b"x" * 53 + b" y\r\n",
        [Command("a1", "LOGIN", Login("x" * 53, "y"))],
    ),
    (
        "max_line counts every line of a command",
        b"a1 LOGIN {3+}\r\nbob " + b"y" * 60 + b"\r\n",
        [Err("a1")],
    ),
    (
        "sync literal over max_literal: BAD, not fatal",
        b"a1 APPEND x {101}\r\n",
        [Err("a1")],
    ),
    (
        "literal exactly max_literal",
        b"a1 APPEND x {100+}\r\n" + b"m" * 100 + b"\r\n",
        [Command("a1", "APPEND", Append("x", b"m" * 100))],
    ),
    (
        "non-sync literal over max_literal: fatal (RFC 7888 §4)",
        b"a1 APPEND x {101+}\r\n" + b"m" * 101 + b"\r\n",
        [Err("a1", fatal=True)],
    ),
    (
        "max_literal counts every literal of a command",
        b"a1 LOGIN {60+}\r\n" + b"u" * 60 + b" {41}\r\n",
        [Err("a1")],
    ),
    (
        "huge literal count is refused without overflow",
        b"a1 APPEND x {99999999999999999999}\r\n",
        [Err("a1")],
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in LIMIT_CASES], ids=[c[0] for c in LIMIT_CASES]
)
def test_limits(data: bytes, expected: list[object]) -> None:
    assert feed_all_ways(data, max_line=64, max_literal=100) == expected


def test_overlong_line_is_refused_before_its_end_arrives() -> None:
    """Memory stays bounded: the error comes while the line is still arriving."""
    rx = Receiver(max_line=64)
    rx.feed(b"a1 LOGIN " + b"x" * 100)
    with pytest.raises(ProtocolSyntaxError) as info:
        rx.next_event()
    assert info.value.tag == "a1" and not info.value.fatal
    rx.feed(b"y" * 10_000)
    assert rx.next_event() is NEED_DATA
    assert rx.buffered == 0
    rx.feed(b"z\r\n" + TRAILER)
    assert rx.next_event() == Command("zz9", "NOOP")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=3000).map(lambda b: b.replace(b"\n", b"x")),
                min_size=1, max_size=30))
def test_memory_stays_bounded_whatever_arrives_without_a_line_end(chunks: list[bytes]) -> None:
    """Input without LF never piles up: at most ``max_line`` + 1 octets are held
    (the +1: a CR waiting for its LF); errors are BAD, never fatal."""
    rx = Receiver(max_line=64, max_literal=100)
    for chunk in chunks:
        rx.feed(chunk)
        while True:
            try:
                event = rx.next_event()
            except ProtocolSyntaxError as exc:
                assert not exc.fatal
                continue
            assert event is NEED_DATA
            break
        assert rx.buffered <= 65
        assert rx.receiving in (Receiving.LINE, Receiving.NOTHING)


def test_nesting_bound() -> None:
    rx = Receiver(max_depth=3)
    rx.feed(b"a1 SEARCH (((ALL)))\r\na2 SEARCH ((((ALL))))\r\na3 SEARCH NOT NOT NOT NOT ALL\r\n")
    assert isinstance(rx.next_event(), Command)
    for tag in ("a2", "a3"):
        with pytest.raises(ProtocolSyntaxError) as info:
            rx.next_event()
        assert info.value.tag == tag and not info.value.fatal
    assert rx.next_event() is NEED_DATA


def test_receiving_says_what_is_unfinished() -> None:
    rx = Receiver(max_line=64)
    assert rx.receiving is Receiving.NOTHING
    rx.feed(b"a1 APP")
    assert rx.next_event() is NEED_DATA
    assert rx.receiving is Receiving.LINE
    rx.feed(b"END INBOX {5}\r\n")
    assert rx.next_event() == NeedContinuation("a1", 5)
    assert rx.next_event() is NEED_DATA
    assert rx.receiving is Receiving.LITERAL
    rx.feed(b"hello")
    assert rx.next_event() is NEED_DATA
    assert rx.receiving is Receiving.LINE  # the line after the literal is due
    rx.feed(b"\r\n")
    assert rx.next_event() == Command("a1", "APPEND", Append("INBOX", b"hello"))
    assert rx.next_event() is NEED_DATA
    assert rx.receiving is Receiving.NOTHING
    rx.feed(b"a2 NOOP " + b"x" * 100)
    with pytest.raises(ProtocolSyntaxError):
        rx.next_event()
    assert rx.next_event() is NEED_DATA
    assert rx.receiving is Receiving.LINE  # the rest of the bad line is being discarded


def test_continuation_comes_before_the_literal() -> None:
    rx = Receiver()
    rx.feed(b"a1 APPEND INBOX {5}\r\n")
    assert rx.next_event() == NeedContinuation("a1", 5)
    assert rx.next_event() is NEED_DATA
    rx.feed(b"hel")
    assert rx.next_event() is NEED_DATA
    rx.feed(b"lo\r\n")
    assert rx.next_event() == Command("a1", "APPEND", Append("INBOX", b"hello"))
    assert rx.next_event() is NEED_DATA


def test_expect_line_only_between_commands() -> None:
    rx = Receiver()
    rx.feed(b"a1 LOGIN {3}\r\n")
    assert isinstance(rx.next_event(), NeedContinuation)
    with pytest.raises(RuntimeError):
        rx.expect_line()


def test_overlong_raw_line() -> None:
    assert feed_all_ways(b"a1 IDLE\r\n" + b"D" * 100 + b"\r\n", max_line=64) == [
        Command("a1", "IDLE"),
        Err(None),
    ]


def test_fatal_error_closes_the_receiver() -> None:
    rx = Receiver(max_literal=10)
    rx.feed(b"a1 APPEND x {11+}\r\n")
    with pytest.raises(ProtocolSyntaxError) as info:
        rx.next_event()
    assert info.value.fatal
    rx.feed(b"a2 NOOP\r\n")
    with pytest.raises(ProtocolSyntaxError) as info:
        rx.next_event()
    assert info.value.fatal


def test_utf8_mailbox_names_after_enable() -> None:
    rx = Receiver()
    rx.utf8 = True
    rx.feed("a1 SELECT \"Entwürfe & Co\"\r\n".encode())
    cmd = rx.next_event()
    assert isinstance(cmd, Command) and cmd.args.mailbox == "Entwürfe & Co"


@pytest.mark.parametrize(
    ("line", "tag"),
    [(b"a1 NOOP", "a1"), (b"a1", None), (b"+a NOOP", None), (b"a] x", "a]"), (b" a", None)],
)
def test_read_tag(line: bytes, tag: str | None) -> None:
    assert read_tag(line) == tag


def test_corpus_messages_survive_append_byte_for_byte() -> None:
    """Every corpus message as an APPEND literal (sync, non-sync, literal8),
    fed whole and in odd-sized chunks, comes out with identical octets."""
    for path in corpus_messages():
        message = path.read_bytes()
        n = len(message)
        for head, binary in ((b"{%d}" % n, False), (b"{%d+}" % n, False), (b"~{%d}" % n, True)):
            data = b"t1 APPEND INBOX (\\Seen) " + head + b"\r\n" + message + b"\r\n" + TRAILER
            expected = Command("t1", "APPEND", Append("INBOX", message, frozenset({"\\Seen"}), binary=binary))
            for size in (len(data), 4093):
                chunks = [data[i : i + size] for i in range(0, len(data), size)]
                events = [e for e in run(chunks) if not isinstance(e, NeedContinuation)]
                assert events == [expected, Command("zz9", "NOOP", NoArgs())], path.name
