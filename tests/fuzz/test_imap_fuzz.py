"""Hypothesis: whatever the client sends, the IMAP receiver yields events or
raises ProtocolSyntaxError — never another exception, never a hang — and the
events do not depend on how the input was chunked."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.imap.parser import COMMANDS
from mailserver.protocol.imap.receiver import Receiver
from mailserver.protocol.imap.seqset import compress, format_sequence_set, parse_sequence_set
from mailserver.protocol.imap.types import NEED_DATA, Command, Line, SequenceSet

FUZZ = settings(max_examples=200, deadline=None)


def drive(chunks: list[bytes], **kw: int) -> tuple[list[object], Receiver]:
    """Feed chunks; collect events and errors (as ("ERR", tag, fatal)).  Bounded:
    each event consumes input, so more events than octets would mean a loop."""
    rx = Receiver(**kw)
    out: list[object] = []
    budget = sum(len(c) for c in chunks) + 2 * len(chunks) + 10
    for chunk in chunks:
        rx.feed(chunk)
        while True:
            budget -= 1
            assert budget > 0, "receiver does not make progress"
            try:
                event = rx.next_event()
            except ProtocolSyntaxError as exc:
                assert exc.tag is None or isinstance(exc.tag, str)
                out.append(("ERR", exc.tag, exc.fatal))
                if exc.fatal:
                    return out, rx
                continue
            if event is NEED_DATA:
                break
            out.append(event)
            if isinstance(event, Command) and event.name == "IDLE":
                rx.expect_line()
    return out, rx


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_random_bytes(data: bytes, cuts: list[int]) -> None:
    whole, _ = drive([data], max_line=100, max_literal=50)
    assert drive(split(data, cuts), max_line=100, max_literal=50)[0] == whole


# Command-shaped input: real command names and grammar pieces in random order
# reach far deeper into the parser than random bytes.
_PIECES = [
    *(name.encode() for name in COMMANDS),
    b"UID", b" ", b" ", b" ", b"(", b")", b"[", b"]", b"<", b">", b".", b"*", b"%", b"\\",
    b'"', b'"x y"', b'"\\"', b"{3}\r\nabc", b"{0+}\r\n", b"~{2}\r\n\x00\xff", b"{1}\r\n",
    b"\r\n", b"\n", b"1", b"0", b"1:*", b"5:1,3", b"4294967296", b"INBOX", b"&AOk-", b"&",
    b"FLAGS", b"+FLAGS.SILENT", b"\\Seen", b"\\Recent", b"BODY.PEEK", b"BODY", b"HEADER.FIELDS",
    b"(From)", b"MIME", b"TEXT", b"BINARY", b"<0.10>", b"CHANGEDSINCE", b"VANISHED", b"RETURN",
    b"CHARSET", b"UTF-8", b"OR", b"NOT", b"SINCE", b"1-Feb-1994", b'" 7-Feb-2024 10:00:00 +0100"',
    b"MODSEQ", b"UNCHANGEDSINCE", b"QRESYNC", b"STATUS", b"MESSAGES", b"NIL", b"=", b"AGI=",
    b"\xc3\xa4", b"\x00", b"DONE",
]


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"a1 ", b"t ", b"", b"UID "]),
            st.lists(st.sampled_from(_PIECES), max_size=12),
        ),
        max_size=4,
    ),
    st.lists(st.integers(0, 600), max_size=6),
)
def test_command_shaped_input(commands: list[tuple[bytes, list[bytes]]], cuts: list[int]) -> None:
    data = b"".join(tag + b"".join(pieces) + b"\r\n" for tag, pieces in commands)
    whole, rx = drive([data])
    assert drive(split(data, cuts))[0] == whole
    if rx.at_boundary:
        # Nothing half-read: the next command parses on its own.
        trailer = b"zz9 NOOP\r\n"
        after, _ = drive([data + trailer])
        expected = Line(trailer.rstrip()) if _idle_pending(whole) else Command("zz9", "NOOP")
        assert after == [*whole, expected]


def _idle_pending(events: list[object]) -> bool:
    return bool(events) and isinstance(events[-1], Command) and events[-1].name == "IDLE"


_seq_number = st.one_of(st.none(), st.integers(1, 2**32 - 1))


@FUZZ
@given(st.lists(st.tuples(_seq_number, _seq_number), min_size=1, max_size=6))
def test_sequence_set_round_trip(ranges: list[tuple[int | None, int | None]]) -> None:
    seqset = SequenceSet(tuple((a, a) if i % 2 else (a, b) for i, (a, b) in enumerate(ranges)))
    assert parse_sequence_set(format_sequence_set(seqset)) == seqset


@FUZZ
@given(st.sets(st.integers(1, 500), max_size=40))
def test_compress_names_exactly_the_numbers(numbers: set[int]) -> None:
    text = compress(numbers)
    if not numbers:
        assert text == ""
        return
    assert parse_sequence_set(text).resolve(500) == sorted(numbers)


@FUZZ
@given(st.text(alphabet="0123456789:,*$ x", max_size=20))
def test_sequence_set_parse_or_error(text: str) -> None:
    try:
        seqset = parse_sequence_set(text)
    except ProtocolSyntaxError:
        return
    assert all(x is None or 1 <= x < 2**32 for rng in seqset.ranges for x in rng)


@FUZZ
@given(
    st.sampled_from(
        ["UTF-8", "US-ASCII", "ISO-8859-1", "UTF-16", "UTF-7", "IDNA", "PUNYCODE", "BASE64",
         "ROT13", "HEX", "X-UNKNOWN", "CP1252", "SHIFT_JIS", "\"utf-8\""]
    ),
    st.binary(max_size=20),
)
def test_search_charsets(charset: str, value: bytes) -> None:
    data = b"a SEARCH CHARSET %s TEXT {%d+}\r\n%s\r\n" % (charset.encode(), len(value), value)
    events, _ = drive([data])
    assert len(events) == 1


@FUZZ
@given(st.binary(max_size=30), st.booleans())
def test_mailbox_names(name: bytes, utf8: bool) -> None:
    """Any octets as a mailbox literal: a decoded name or BAD, in both modes."""
    rx = Receiver()
    rx.utf8 = utf8
    rx.feed(b"a SELECT {%d+}\r\n%s\r\n" % (len(name), name))
    try:
        event = rx.next_event()
    except ProtocolSyntaxError as exc:
        assert exc.tag == "a"
        return
    assert isinstance(event, Command) and isinstance(event.args.mailbox, str)
    assert all(ch >= " " for ch in event.args.mailbox)
