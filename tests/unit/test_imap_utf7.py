"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.imap import utf7

PAIRS = [
    ("INBOX", "INBOX"),
    ("", ""),
    ("&", "&-"),
    ("A & B &&", "A &- B &-&-"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # the §5.1.3 example
    ("Entwürfe", "Entw&APw-rfe"),
    ("été", "&AOk-t&AOk-"),
    ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
    ("😀", "&2D3eAA-"),  # outside the BMP: a surrogate pair
    ("a\tb", "a&AAk-b"),  # controls are encoded too
    ("\x7f", "&AH8-"),
    ("ÿ?", "&AP8-?"),
    ("\u00e9\u00e9\u00e9", "&AOkA6QDp-"),
]


@pytest.mark.parametrize(("text", "wire"), PAIRS)
def test_vectors(text: str, wire: str) -> None:
    assert utf7.encode(text) == wire
    assert utf7.decode(wire) == text


INVALID = [
    "&",  # unterminated
    "&Jjo",  # unterminated
    "&Jjo!",  # bad base64 character
    "&U,BTFw-&ZeVnLIqe-",  # §5.1.3: "MUST NOT" split runs (null shift)
    "&AGE-",  # encodes "a", which must represent itself
    "&ACY-",  # encodes "&", which must be "&-"
    "&AOk",  # unterminated
    "&AO-",  # not a whole UTF-16 unit
    "&AOl-",  # non-zero padding bits
    "&2D0-",  # lone high surrogate
    "&3gA-",  # lone low surrogate
    "&AOk=-",  # padding is not allowed
    "&AOk/-",  # "/" is "," in modified base64
    "é",  # 8-bit must be encoded
    "a\tb",  # controls must be encoded
]


@pytest.mark.parametrize("wire", INVALID)
def test_invalid(wire: str) -> None:
    with pytest.raises(ProtocolSyntaxError):
        utf7.decode(wire)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",))))
def test_round_trip(text: str) -> None:
    wire = utf7.encode(text)
    assert wire.isascii() and all(" " <= c <= "~" for c in wire)
    assert utf7.decode(wire) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="&-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,/= é"))
def test_decode_is_canonical(wire: str) -> None:
    """Whatever decodes re-encodes to the same octets: one spelling per name."""
    try:
        text = utf7.decode(wire)
    except ProtocolSyntaxError:
        return
    assert utf7.encode(text) == wire
