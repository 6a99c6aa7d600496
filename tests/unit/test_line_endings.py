"""to_crlf: bare LF -> CRLF, bare CR kept, CRLF-clean input returned as is."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.protocol.line_endings import is_crlf_clean, to_crlf

# Octet strings rich in line-end material.
_TEXT = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b".", b"\x00", b"\xff", b" "]),
                 max_size=40).map(b"".join)


@pytest.mark.parametrize(("data", "want"), [
    (b"", b""),
    (b"a", b"a"),
    (b"a\r\nb\r\n", b"a\r\nb\r\n"),
    (b"a\nb\n", b"a\r\nb\r\n"),
    (b"\n", b"\r\n"),
    (b"\n\n", b"\r\n\r\n"),
    (b"a\rb", b"a\rb"),  # bare CR kept
    (b"a\r", b"a\r"),
    (b"\r\r\n", b"\r\r\n"),  # a bare CR, then a CRLF
    (b"a\n\r\nb\r", b"a\r\n\r\nb\r"),
    (b"\n\r", b"\r\n\r"),
])
def test_examples(data: bytes, want: bytes) -> None:
    assert to_crlf(data) == want
    assert is_crlf_clean(want)


def test_clean_input_is_not_copied() -> None:
    data = b"Subject: x\r\n\r\nbody\r\n" * 100
    assert to_crlf(data) is data


def _reference(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_matches_reference(data: bytes) -> None:
    out = to_crlf(data)
    assert out == _reference(data)
    assert is_crlf_clean(out)
    assert to_crlf(out) == out  # idempotent
    # Only CRs were added, one per bare LF; everything else is unchanged.
    assert out.replace(b"\r", b"") == data.replace(b"\r", b"")
    assert len(out) == len(data) + data.count(b"\n") - data.count(b"\r\n")
    assert is_crlf_clean(data) == (out == data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_octets(data: bytes) -> None:
    assert to_crlf(data) == _reference(data)
