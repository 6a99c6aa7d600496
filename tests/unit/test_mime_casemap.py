"""``casemap`` is i;unicode-casemap's canonical form (RFC 5051 §2: simple
titlecase per character, then NFKD), which SEARCH compares in (RFC 9051 §6.4.4);
``search_norm`` adds white-space folding.  (Dovecot compares the same way,
bench/COMPARE.md.)
"""

from __future__ import annotations

import unicodedata

import pytest

from mailserver.protocol.mime import facts, search_norm
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


def test_prepare_casemap_builds_the_table_once() -> None:
    facts._special.cache_clear()
    facts.prepare_casemap()
    assert facts._special.cache_info().currsize == 1
    assert facts.casemap("straße") == facts.casemap("STRAßE")
    assert facts._special.cache_info().hits >= 1
