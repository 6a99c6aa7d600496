"""Response encoders (RFC 3501 §4, §7, §9)."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.protocol.imap import response as r
from mailserver.protocol.imap.tokens import Cursor

QUOTE = [
    ("", b'""'),
    ("hello world", b'"hello world"'),
    ('say "hi"', b'"say \\"hi\\""'),
    ("back\\slash", b'"back\\\\slash"'),
    ("two\r\nlines", b"{10}\r\ntwo\r\nlines"),
    ("nul\x00", b"{4}\r\nnul\x00"),
    ("caf\u00e9", b"{5}\r\ncaf\xc3\xa9"),
]


@pytest.mark.parametrize(("text", "wire"), QUOTE)
def test_quote(text: str, wire: bytes) -> None:
    assert r.quote(text) == wire


def test_quote_utf8_allows_8bit_but_not_controls() -> None:
    assert r.quote("caf\u00e9", utf8=True) == b'"caf\xc3\xa9"'
    assert r.quote("a\nb", utf8=True) == b"{3}\r\na\nb"


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("a]b", b"a]b"),
        ("", b'""'),
        ("NIL", b'"NIL"'),
        ("nil", b'"nil"'),
        ("a b", b'"a b"'),
        ("a*", b'"a*"'),
        ("a%", b'"a%"'),
        ("(x)", b'"(x)"'),
        ("{1}", b'"{1}"'),
    ],
)
def test_astring(text: str, wire: bytes) -> None:
    assert r.astring(text) == wire


def test_nstring_and_literal() -> None:
    assert r.nstring(None) == b"NIL"
    assert r.nstring(b"x") == b'"x"'
    assert r.nstring(b"\xff") == b"{1}\r\n\xff"
    assert r.literal(b"") == b"{0}\r\n"
    assert r.literal(b"hello") == b"{5}\r\nhello"


@pytest.mark.parametrize(
    ("name", "utf8", "wire"),
    [
        ("INBOX", False, b'"INBOX"'),
        ("Entwürfe", False, b'"Entw&APw-rfe"'),
        ("A & B", False, b'"A &- B"'),
        ('say "x"', False, b'"say \\"x\\""'),
        ("Entwürfe", True, b'"Entw\xc3\xbcrfe"'),
        ("A & B", True, b'"A & B"'),
    ],
)
def test_mailbox_name(name: str, utf8: bool, wire: bytes) -> None:
    assert r.mailbox_name(name, utf8=utf8) == wire


def test_flag_list() -> None:
    assert r.flag_list([]) == b"()"
    assert r.flag_list({"$Junk", "\\Seen", "\\Answered", "foo"}) == b"(\\Answered \\Seen $Junk foo)"


@pytest.mark.parametrize(
    ("ts", "offset", "wire"),
    [
        (calendar.timegm((1996, 7, 17, 9, 44, 25)), -420, b'"17-Jul-1996 02:44:25 -0700"'),
        (0, 0, b'"01-Jan-1970 00:00:00 +0000"'),
        (calendar.timegm((2024, 2, 29, 23, 30, 0)), 90, b'"01-Mar-2024 01:00:00 +0130"'),
        (calendar.timegm((2024, 1, 1, 0, 0, 0)), -30, b'"31-Dec-2023 23:30:00 -0030"'),
    ],
)
def test_internal_date(ts: int, offset: int, wire: bytes) -> None:
    assert r.internal_date(ts, offset) == wire


def test_lines() -> None:
    assert r.tagged("a1", "OK", "done") == b"a1 OK done\r\n"
    assert r.tagged("a1", "NO", "gone", "NONEXISTENT") == b"a1 NO [NONEXISTENT] gone\r\n"
    assert r.tagged("a1", "BAD", "") == b"a1 BAD BAD\r\n"
    # A CR/LF in text must not smuggle a second response onto the wire.
    assert r.tagged("a1", "NO", "x\r\na2 OK y") == b"a1 NO x  a2 OK y\r\n"
    assert r.untagged("3 EXISTS") == b"* 3 EXISTS\r\n"
    assert r.untagged(b"1 FETCH (BODY[] {1}\r\nx)") == b"* 1 FETCH (BODY[] {1}\r\nx)\r\n"
    assert r.continuation() == b"+ Ready\r\n"
    assert r.continuation("go\non") == b"+ go on\r\n"


def _read_back(wire: bytes) -> bytes:
    """Parse an encoded string back with the command tokenizer."""
    if wire.startswith(b"{"):
        head, _, body = wire.partition(b"\r\n")
        cur = Cursor([head, b""], [body])
    else:
        cur = Cursor([wire], [])
    value = cur.astring()
    cur.end()
    return value


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_quote_round_trips(data: bytes) -> None:
    assert _read_back(r.quote(data)) == data
    assert _read_back(r.astring(data)) == data
