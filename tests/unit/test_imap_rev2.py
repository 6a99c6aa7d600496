"""Grammar of the IMAP4rev2-era additions: COMPRESS (RFC 4978 §5), ENABLE
names (RFC 9051, RFC 6855), UTF-8 mailbox names and the UTF8 APPEND data
extension (RFC 6855 §3, §4), and non-synchronizing literals of any size
under LITERAL+ (RFC 7888 §3; LITERAL- would cap them at 4096, §4).

Every case is fed whole, one byte at a time, and followed by another command;
all three must agree (STYLE.md, after h11).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.imap_receiver import TRAILER, Err

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.imap import utf7
from mailserver.protocol.imap.receiver import Receiver
from mailserver.protocol.imap.response import mailbox_name
from mailserver.protocol.imap.types import (
    NEED_DATA,
    Append,
    Command,
    Compress,
    Enable,
    MailboxArg,
    NeedContinuation,
)

NC = NeedContinuation


def run(chunks: list[bytes], *, utf8: bool) -> list[object]:
    rx = Receiver(max_line=8192, max_literal=1 << 20)
    rx.utf8 = utf8
    out: list[object] = []
    for chunk in chunks:
        rx.feed(chunk)
        while True:
            try:
                event = rx.next_event()
            except ProtocolSyntaxError as exc:
                out.append(Err(exc.tag, exc.fatal))
                if exc.fatal:
                    return out
                continue
            if event is NEED_DATA:
                break
            out.append(event)
    return out


def events(data: bytes, *, utf8: bool = False) -> list[object]:
    whole = run([data], utf8=utf8)
    assert run([data[i : i + 1] for i in range(len(data))], utf8=utf8) == whole
    trailing = run([data + TRAILER], utf8=utf8)
    assert trailing == [*whole, Command("zz9", "NOOP")]
    return whole


# ------------------------------------------------------------------ COMPRESS

@pytest.mark.parametrize(("data", "expected"), [
    (b"z1 COMPRESS DEFLATE\r\n", [Command("z1", "COMPRESS", Compress("DEFLATE"))]),
    (b"z1 compress deflate\r\n", [Command("z1", "COMPRESS", Compress("DEFLATE"))]),
    (b"z1 COMPRESS X-ZSTD\r\n", [Command("z1", "COMPRESS", Compress("X-ZSTD"))]),
    (b"z1 COMPRESS\r\n", [Err("z1")]),
    (b"z1 COMPRESS  DEFLATE\r\n", [Err("z1")]),
    (b"z1 COMPRESS DEFLATE extra\r\n", [Err("z1")]),
    (b'z1 COMPRESS "DEFLATE"\r\n', [Err("z1")]),
])
def test_compress_grammar(data: bytes, expected: list[object]) -> None:
    assert events(data) == expected


# -------------------------------------------------------------------- ENABLE

def test_enable_names() -> None:
    got = events(b"e ENABLE IMAP4rev2 UTF8=ACCEPT condstore\r\n")
    assert got == [Command("e", "ENABLE", Enable(("IMAP4REV2", "UTF8=ACCEPT", "CONDSTORE")))]


# ------------------------------------------------------------------- LITERAL+

@pytest.mark.parametrize("size", [4096, 4097, 65536, 300_000])
def test_big_non_sync_literal(size: int) -> None:
    """LITERAL+ (which we advertise) has no 4096 cap; no continuation is asked."""
    body = bytes(range(1, 256)) * (size // 255) + b"x" * (size % 255)
    got = run([b"a APPEND INBOX {%d+}\r\n" % size + body + b"\r\n" + TRAILER], utf8=False)
    assert got == [Command("a", "APPEND", Append("INBOX", body)), Command("zz9", "NOOP")]


def test_big_non_sync_literal8() -> None:
    body = b"\x00\xff" * 3000
    got = events(b"a APPEND INBOX ~{6000+}\r\n" + body + b"\r\n")
    assert got == [Command("a", "APPEND", Append("INBOX", body, binary=True))]


def test_sync_literal8_asks_for_continuation() -> None:
    got = events(b"a APPEND INBOX ~{2}\r\n\x00\x01\r\n")
    assert got == [NC("a", 2), Command("a", "APPEND", Append("INBOX", b"\x00\x01", binary=True))]


@pytest.mark.parametrize("announce", [b"{+5}", b"{5 +}", b"{5++}", b"{-5+}", b"~{5+ }",
                                      b"{5+ }", b"{ 5}"])
def test_malformed_announcements_are_not_literals(announce: bytes) -> None:
    """Not a literal announcement, so no octets are swallowed: the line is
    simply a bad command and the next line is a command again."""
    got = events(b"a APPEND INBOX " + announce + b"\r\n")
    assert got == [Err("a")]


# ------------------------------------------------------- UTF-8 mailbox names

def test_8bit_name_needs_utf8_mode() -> None:
    data = 'a SELECT "Réunions"\r\n'.encode()
    assert events(data) == [Err("a")]
    assert events(data, utf8=True) == [Command("a", "SELECT", MailboxArg("Réunions"))]


def test_mutf7_only_without_utf8_mode() -> None:
    data = b"a SELECT R&AOk-unions\r\n"
    assert events(data) == [Command("a", "SELECT", MailboxArg("Réunions"))]
    # In UTF-8 mode "&" is just a character (RFC 6855 §3).
    assert events(data, utf8=True) == [Command("a", "SELECT", MailboxArg("R&AOk-unions"))]


def test_inbox_any_case_in_utf8_mode() -> None:
    assert events(b'a SELECT "inBox"\r\n', utf8=True) == [
        Command("a", "SELECT", MailboxArg("INBOX"))]


@pytest.mark.parametrize("raw", [b'"a\xc2\x80b"', b'"a\x7fb"', b'"\xff"', b'"\xc3"'])
def test_bad_utf8_names(raw: bytes) -> None:
    assert events(b"a CREATE " + raw + b"\r\n", utf8=True) == [Err("a")]


# ------------------------------------------------------------ APPEND UTF8

def test_append_utf8_form() -> None:
    msg = "Subject: Grüße\r\n\r\nx\r\n".encode()
    sync = b"a APPEND INBOX (\\Seen) UTF8 (~{%d}\r\n" % len(msg) + msg + b")\r\n"
    expected = Command("a", "APPEND", Append("INBOX", msg, frozenset({"\\Seen"}), None, True))
    assert events(sync, utf8=True) == [NC("a", len(msg)), expected]
    plus = b"a APPEND INBOX (\\Seen) UTF8 (~{%d+}\r\n" % len(msg) + msg + b")\r\n"
    assert events(plus, utf8=True) == [expected]
    assert events(plus) == [Err("a")]  # only after UTF8=ACCEPT
    assert events(b"a APPEND INBOX UTF8 (~{1+}\r\nx\r\n", utf8=True) == [Err("a")]
    assert events(b"a APPEND INBOX UTF8 ~{1+}\r\nx)\r\n", utf8=True) == [Err("a")]


# -------------------------------------------------------------- responses

def test_mailbox_name_encoding() -> None:
    assert mailbox_name("Réunions") == b'"R&AOk-unions"'
    assert mailbox_name("Réunions", True) == '"Réunions"'.encode()
    assert mailbox_name('a"b\\c', True) == b'"a\\"b\\\\c"'
    assert mailbox_name("INBOX", True) == b'"INBOX"'


_NAME_CHARS = st.characters(blacklist_categories=("Cs", "Cc"),
                            blacklist_characters="\x85")


@given(st.text(_NAME_CHARS, min_size=1, max_size=40))
def test_names_round_trip_between_modes(name: str) -> None:
    """A name sent in one mode and read in the other is the same name."""
    if name.upper() == "INBOX":
        return
    for utf8 in (False, True):
        wire = mailbox_name(name, utf8)
        got = run([b"a CREATE " + wire + b"\r\n"], utf8=utf8)
        assert got == [Command("a", "CREATE", MailboxArg(name))]
    assert utf7.decode(utf7.encode(name)) == name
