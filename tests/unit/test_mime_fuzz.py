"""Hypothesis: any bytes give facts (without the ``analyze`` safety net), and the
facts are consistent for MIME-shaped junk too."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailserver.protocol.imap.types import Section
from mailserver.protocol.mime import (
    MESSAGE,
    MULTIPART,
    MessageFacts,
    Part,
    analyze,
    header_values,
    search_text,
    section_bytes,
)
from mailserver.protocol.mime.facts import compute_facts

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EOLS = st.sampled_from([b"\r\n", b"\n", b"\r", b""])
LINES = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=a",
        b"Content-Type: multipart/alternative; boundary=ab",
        b'Content-Type: multipart/digest; boundary="a b"',
        b"Content-Type: message/rfc822",
        b"Content-Type: message/rfc822; x=1\r\nContent-Transfer-Encoding: base64",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Type: text/plain; charset*0*=x; charset*1=y",
        b"Content-Transfer-Encoding: quoted-printable",
        b"Content-Transfer-Encoding: base64",
        b"Content-Disposition: attachment; filename=\"x\"",
        b"Content-Language: en, (c) fr",
        b"From: A <a@b>, g: c@d;",
        b"To: <@r:x@y>, (c) \"q\\\"\" <>",
        b"Subject: =?utf-8?b?w6k=?= =?bogus?q?x?=",
        b"Date: Fri, 21 Nov 1997 09:55:06 -0600",
        b" folded continuation",
        b"--a",
        b"--a--",
        b"--ab",
        b"--ab--",
        b"--a b",
        b"",
        b"body text \xff\x00",
        b"aGVsbG8=",
    ]
)
MIMEISH = st.lists(st.tuples(LINES, EOLS), max_size=40).map(
    lambda pairs: b"".join(line + eol for line, eol in pairs)
)


def paths(root: Part) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []

    def body_parts(msg: Part, path: tuple[int, ...]) -> None:
        if msg.kind == MULTIPART:
            for i, c in enumerate(msg.children, 1):
                visit(c, path + (i,))
        else:
            visit(msg, path + (1,))

    def visit(p: Part, path: tuple[int, ...]) -> None:
        out.append(path)
        if p.kind == MULTIPART:
            for i, c in enumerate(p.children, 1):
                visit(c, path + (i,))
        elif p.kind == MESSAGE:
            body_parts(p.children[0], path)

    body_parts(root, ())
    return out


def check(blob: bytes) -> None:
    facts = compute_facts(blob)
    assert analyze(blob) == facts
    assert MessageFacts.from_bytes(facts.to_bytes()) == facts
    assert facts.root.end == len(blob)
    stored = b"P: x\r\n" + blob
    for text in (None, "HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        assert section_bytes(stored, facts, Section((), text, ("FROM",)), 6) is not None
    for num in paths(facts.root):
        for text in (None, "MIME", "HEADER", "TEXT"):
            got = section_bytes(stored, facts, Section(num, text), 6)
            assert got is None or got in stored
        assert section_bytes(stored, facts, Section(num), 6) is not None
    assert isinstance(search_text(stored, facts), str)
    for name in ("subject", "from"):
        assert all(isinstance(v, str) for v in header_values(blob, name))


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes(blob: bytes) -> None:
    check(blob)


@SETTINGS
@given(MIMEISH)
def test_mime_shaped_junk(blob: bytes) -> None:
    check(blob)


def test_long_non_ascii_media_type_survives_storage() -> None:
    """Found by bench/fuzz.py (mime): a media type over 255 UTF-8 octets was
    cut inside a character, and the stored facts could not be read back."""
    for n in (122, 123, 200):
        blob = b"Content-Type: multipart/" + b"\xff" * n + b"; boundary=ab\n\nbody\n"
        facts = compute_facts(blob)
        back = MessageFacts.from_bytes(facts.to_bytes())
        assert back.bodystructure == facts.bodystructure
        assert len(back.root.media_type.encode()) <= 255
        assert facts.root.media_type.startswith(back.root.media_type)


def test_date_with_a_huge_zone_offset() -> None:
    """Found by bench/fuzz.py (mime): the sent date did not fit the stored
    facts, so the facts could not be written (analyze fell back to none)."""
    blob = b"Subject: d\r\nDate: Fri, 13 Jul 2012 10:06:49 -0555555555555555200\r\n\r\nx\r\n"
    facts = compute_facts(blob)
    assert facts.sent_date is None
    assert MessageFacts.from_bytes(facts.to_bytes()) == facts
    assert analyze(blob).envelope == facts.envelope != b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_rfc2231_section_number_that_is_not_ascii() -> None:
    """Found by bench/fuzz.py (mime): a parameter section "*²" was taken as a
    number ("²".isdigit()) and int() failed."""
    blob = (b"Content-Type: text/plain; name*\xb2=a; name*0=b\r\n"
            b"Subject: p\r\n\r\nx\r\n")
    facts = compute_facts(blob)
    assert facts.bodystructure.startswith(b'("text" "plain"')
