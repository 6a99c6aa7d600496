"""BODY[section] (RFC 3501 §6.4.5) and SEARCH text, from hand-written messages."""

from __future__ import annotations

import pytest

from mailserver.protocol.imap.types import Section
from mailserver.protocol.mime import analyze, search_text, section_bytes

INNER = (
    b"Subject: inner\r\n"
    b"Content-Type: multipart/alternative; boundary=i\r\n"
    b"\r\n"
    b"--i\r\n"
    b"\r\n"
    b"inner one\r\n"
    b"--i\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<b>inner two</b>\r\n"
    b"--i--\r\n"
)
HEADER = (
    b"From: a@b\r\n"
    b"Subject: top\r\n"
    b"X-Folded: one\r\n two\r\n"
    b"Content-Type: multipart/mixed; boundary=o\r\n"
    b"\r\n"
)
MSG = (
    HEADER
    + b"--o\r\n"
    + b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    + b"Content-Transfer-Encoding: quoted-printable\r\n"
    + b"\r\n"
    + b"caf=E9 au lait\r\n"
    + b"--o\r\n"
    + b"Content-Type: message/rfc822\r\n"
    + b"\r\n"
    + INNER
    + b"\r\n--o\r\n"
    + b"Content-Type: application/octet-stream\r\n"
    + b"Content-Transfer-Encoding: base64\r\n"
    + b"\r\n"
    + b"aGlkZGVu\r\n"
    + b"--o--\r\n"
)
PREFIX = b"Return-Path: <r@x>\r\nDelivered-To: d@x\r\n"
FACTS = analyze(MSG)


def sec(spec: str, fields: tuple[str, ...] = (), prefix: bytes = b"") -> bytes | None:
    part: tuple[int, ...] = ()
    text: str | None = None
    for i, piece in enumerate(spec.split(".") if spec else []):
        if piece.isdigit():
            part += (int(piece),)
        else:
            text = ".".join(spec.split(".")[i:])
            break
    return section_bytes(prefix + MSG, FACTS, Section(part, text, fields), len(prefix))


def test_whole_header_text() -> None:
    assert sec("") == MSG
    assert sec("HEADER") == HEADER
    assert sec("TEXT") == MSG[len(HEADER) :]


def test_prefix_is_part_of_the_top_header_and_shifts_offsets() -> None:
    assert sec("", prefix=PREFIX) == PREFIX + MSG
    assert sec("HEADER", prefix=PREFIX) == PREFIX + HEADER
    assert sec("TEXT", prefix=PREFIX) == MSG[len(HEADER) :]
    assert sec("1", prefix=PREFIX) == b"caf=E9 au lait"
    assert sec("2.HEADER", prefix=PREFIX) == sec("2.HEADER")
    assert sec("HEADER.FIELDS", ("RETURN-PATH",), prefix=PREFIX) == b"Return-Path: <r@x>\r\n\r\n"


def test_header_fields_and_not() -> None:
    assert sec("HEADER.FIELDS", ("SUBJECT", "X-FOLDED")) == (
        b"Subject: top\r\nX-Folded: one\r\n two\r\n\r\n"
    )
    assert sec("HEADER.FIELDS", ("NOPE",)) == b"\r\n"
    assert sec("HEADER.FIELDS.NOT", ("SUBJECT", "X-FOLDED", "CONTENT-TYPE")) == (
        b"From: a@b\r\n\r\n"
    )


def test_numbered_parts_and_mime() -> None:
    assert sec("1") == b"caf=E9 au lait"
    assert sec("1.MIME") == (
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    assert sec("3") == b"aGlkZGVu"
    assert sec("2") == INNER


def test_message_rfc822_part() -> None:
    assert sec("2.HEADER") == INNER[: INNER.index(b"\r\n\r\n") + 4]
    assert sec("2.TEXT") == INNER[INNER.index(b"\r\n\r\n") + 4 :]
    assert sec("2.HEADER.FIELDS", ("SUBJECT",)) == b"Subject: inner\r\n\r\n"
    assert sec("2.1") == b"inner one"
    assert sec("2.2") == b"<b>inner two</b>"
    assert sec("2.2.MIME") == b"Content-Type: text/html\r\n\r\n"
    assert sec("2.MIME") == b"Content-Type: message/rfc822\r\n\r\n"


@pytest.mark.parametrize(
    "spec", ["4", "0", "1.1", "2.3", "2.1.1", "1.HEADER", "3.TEXT", "MIME", "5.MIME"]
)
def test_missing_parts_are_none(spec: str) -> None:
    assert sec(spec) is None


def test_non_multipart_part_one_is_its_body() -> None:
    msg = b"Subject: s\r\n\r\nbody\r\n"
    f = analyze(msg)
    assert section_bytes(msg, f, Section((1,))) == b"body\r\n"
    assert section_bytes(msg, f, Section((1,), "MIME")) == b"Subject: s\r\n\r\n"
    assert section_bytes(b"P: x\r\n" + msg, f, Section((1,), "MIME"), 6) == (
        b"P: x\r\nSubject: s\r\n\r\n"
    )
    assert section_bytes(msg, f, Section((2,))) is None


def test_top_level_message_rfc822() -> None:
    inner = b"Subject: in\r\n\r\nhello\r\n"
    msg = b"Content-Type: message/rfc822\r\n\r\n" + inner
    f = analyze(msg)
    assert section_bytes(msg, f, Section((1,))) == inner
    assert section_bytes(msg, f, Section((1,), "HEADER")) == b"Subject: in\r\n\r\n"
    assert section_bytes(msg, f, Section((1, 1))) == b"hello\r\n"


def test_header_fields_without_final_line_break() -> None:
    msg = b"Subject: no end"
    f = analyze(msg)
    assert section_bytes(msg, f, Section((), "HEADER.FIELDS", ("SUBJECT",))) == (
        b"Subject: no end\r\n\r\n"
    )
    assert section_bytes(msg, f, Section((), "TEXT")) == b""


def test_search_text_decodes_parts() -> None:
    text = search_text(MSG, FACTS)
    assert "café au lait" in text
    assert "inner one" in text and "inner two" in text
    # BODY: content only; TEXT also the encapsulated header (body of the outer)
    assert "Subject: inner" not in text
    assert "Subject: inner" in search_text(MSG, FACTS, with_headers=True)
    assert "hidden" not in text  # application/octet-stream is not text
    assert search_text(PREFIX + MSG, FACTS) == text


def test_search_text_base64_and_charsets() -> None:
    msg = (
        b"Content-Type: text/plain; charset=koi8-r\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        b"8NLJ18XU\r\n"
    )
    assert search_text(msg, analyze(msg)) == "Привет"
    junk = b"Content-Type: text/plain; charset=x-nope\r\nContent-Transfer-Encoding: base64\r\n\r\n!!\r\n"
    assert search_text(junk, analyze(junk)) == ""


# Parts that BODYSTRUCTURE lists but the blob does not hold are empty, not absent
# (RFC 3501 §6.4.5, §7.4.2); SEARCH BODY text is the decoded content of leaf parts,
# not MIME structure (both as Dovecot, bench/COMPARE.md).


def test_empty_multipart_part_is_empty() -> None:
    msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\nnothing\r\n"
    f = analyze(msg)
    assert b'"7bit" 0 0 NIL NIL NIL NIL) "mixed"' in f.bodystructure
    assert section_bytes(msg, f, Section((1,))) == b""
    assert section_bytes(msg, f, Section((1,), "MIME")) == b""
    assert section_bytes(msg, f, Section((2,))) is None
    assert section_bytes(msg, f, Section((1, 1))) is None


def test_unparsed_message_rfc822_is_an_empty_message() -> None:
    msg = (b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"U3ViamVjdDogaGkNCg0KYm9keQ0K\r\n")
    f = analyze(msg)
    assert b'"7bit" 0 0 NIL NIL NIL NIL) 1 NIL NIL NIL NIL)' in f.bodystructure
    for text in ("HEADER", "TEXT"):
        assert section_bytes(msg, f, Section((1,), text)) == b""
    assert section_bytes(msg, f, Section((1, 1))) == b""
    assert section_bytes(msg, f, Section((1, 2))) is None
    # A text part is no message: HEADER of it stays absent.
    plain = b"Subject: x\r\n\r\nbody\r\n"
    assert section_bytes(plain, analyze(plain), Section((1,), "HEADER")) is None


def test_body_text_is_content_only() -> None:
    msg = (b"Content-Type: multipart/mixed; boundary=zz\r\n\r\npreamble\r\n"
           b"--zz\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
           b"--zz\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nsecond\r\n"
           b"--zz\r\nContent-Type: message/external-body; access-type=x\r\n\r\n"
           b"Content-Type: text/plain\r\n\r\nthird\r\n--zz--\r\nepilogue\r\n")
    f = analyze(msg)
    body = search_text(msg, f)
    assert body.split("\n") == ["first", "second", "Content-Type: text/plain\r", "\r", "third"]
    for structure in ("zz", "preamble", "epilogue", "message/rfc822", "Subject: inner"):
        assert structure not in body
    assert "Subject: inner" in search_text(msg, f, with_headers=True)
