"""Pure MIME/search fixes found by comparing with Dovecot (bench/COMPARE.md).

* ``casemap`` is i;unicode-casemap's canonical form (RFC 5051 §2: simple
  titlecase per character, then NFKD), which SEARCH compares in (RFC 9051 §6.4.4).
* Parts that BODYSTRUCTURE lists but the blob does not hold are empty, not
  absent (RFC 3501 §6.4.5, §7.4.2).
* SEARCH BODY text is the decoded content of leaf parts, not MIME structure.
"""

from __future__ import annotations

import unicodedata

import pytest

from mailserver.protocol.imap.types import Section
from mailserver.protocol.mime import analyze, facts, search_norm, search_text, section_bytes
from mailserver.protocol.mime.facts import casemap


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("hello", "HELLO"),
        ("Grüße", "GRÜßE"),
        ("ǆ", "Ǆ"),  # digraphs: all three forms have the titlecase ǅ
        ("ǅ", "ǆ"),
        ("ſ", "s"),  # long s: simple titlecase S
        ("\u212a", "k"),  # KELVIN SIGN: NFKD K
        ("é", "E\u0301"),  # precomposed vs decomposed
        ("ᾳ", "ᾼ"),  # full uppercase "ΑΙ", simple titlecase ᾼ
        ("\u00a0", " "),  # NFKD
    ],
)
def test_equal_under_casemap(a: str, b: str) -> None:
    assert casemap(a) == casemap(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ß", "ss"),  # full folding would say equal; simple mapping keeps ß
        ("ß", "SS"),
        ("ﬁ", "FI"),  # NFKD gives "fi", after the titlecase step: stays lower case
        ("ა", "Ა"),  # Georgian Mkhedruli has no titlecase (Unicode 11)
    ],
)
def test_different_under_casemap(a: str, b: str) -> None:
    assert casemap(a) != casemap(b)


def test_casemap_is_nfkd() -> None:
    # Not idempotent (NFKD runs after the titlecase step: "ﬁ" -> "fi"), which
    # is fine: needle and haystack are each mapped once.
    text = "Straße ǅemal ﬁle Ǆ K ᾳ Köln ΣΊΣΥΦΟΣ ß\u00a0x"
    assert unicodedata.is_normalized("NFKD", casemap(text))
    assert casemap(text).startswith(unicodedata.normalize("NFKD", "STRAßE DžEMAL fiLE"))


def test_search_norm_collapses_white_space() -> None:
    assert search_norm("a \t\r\n  Straße") == "A STRAßE"
    assert search_norm("ascii only") == "ASCII ONLY"


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


def test_prepare_casemap_builds_the_table_once() -> None:
    facts._special.cache_clear()
    facts.prepare_casemap()
    assert facts._special.cache_info().currsize == 1
    assert facts.casemap("straße") == facts.casemap("STRAßE")
    assert facts._special.cache_info().hits >= 1
