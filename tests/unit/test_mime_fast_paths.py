"""The shortcuts that make ``analyze`` cheap give what the general code gives:
the header split once (``HeaderFields``), the windowed blank-line search, the
address fast path, and the quoted-string fast path."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.protocol.mime import header_values, headers
from mailserver.protocol.mime.headers import (
    _WINDOW,
    HeaderFields,
    find_header_end,
    parse_fields,
)
from mailserver.protocol.mime.imap_envelope import _parse_list, parse_addresses
from mailserver.protocol.mime.imapstr import MAX_QUOTED, string

SETTINGS = settings(max_examples=300, deadline=None)

BLOCK = (
    b"Received: from x\r\n\tby y\r\n"
    b"From: A <a@example.org>\r\n"
    b"TO: b@example.org\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"to: second@example.org\r\n"
    b"no colon here\r\n"
    b"\r\n"
)


def test_header_fields_indexes_by_lower_case_name_in_order() -> None:
    hf = HeaderFields.parse(BLOCK)
    assert hf.fields == parse_fields(BLOCK)
    assert [f.value for f in hf.by_name[b"to"]] == [b" b@example.org", b" second@example.org"]
    assert hf.first(b"to") == b" b@example.org"
    assert hf.first(b"cc") is None
    assert hf.text(b"received") == " from x\tby y"
    for name in ("from", "to", "subject", "cc", "received"):
        assert hf.values(name.encode()) == header_values(BLOCK, name)
    assert hf.values(b"subject") == ["café"]


def test_header_fields_of_a_range_do_not_need_a_copy() -> None:
    pre, post = b"junk\r\n", b"--boundary\r\nbody"
    data = pre + BLOCK + post
    hf = HeaderFields.parse(data, len(pre), len(pre) + len(BLOCK))
    assert hf.fields == parse_fields(BLOCK)  # offsets relative to the range


def _reference_end(data: bytes, start: int) -> tuple[int, int]:
    """find_header_end's blank-line search done the obvious way (one regex)."""
    m = re.compile(rb"\n\r?\n").search(data, start)
    if m is None:
        return len(data), len(data)
    return m.start() + 1, m.end()


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
@pytest.mark.parametrize("size", [_WINDOW - 40, _WINDOW - 1, _WINDOW, _WINDOW + 1, 5 * _WINDOW])
def test_blank_line_found_across_search_windows(eol: bytes, size: int) -> None:
    # header lines filling ``size`` octets, the blank line right after: it
    # lands just before, on, and after the edges of the doubling windows
    lines = b"X-A: " + b"a" * (size - 6 - len(eol)) + eol
    for shift in range(4):
        data = b"Subject: s" + eol + b"X: " + b"b" * shift + eol + lines + eol + b"body\n\nmore"
        assert find_header_end(data, 0, len(data)) == _reference_end(data, 0)


def test_no_blank_line_makes_the_whole_range_header() -> None:
    data = b"Subject: s\r\n" + b"X-A: a\r\n" * 3000
    assert find_header_end(data, 0, len(data)) == (len(data), len(data))


HEADERISH = st.lists(
    st.sampled_from([b"A: b", b" c", b"", b"\r", b"x", b"Subject: y", b"\n", b"\r\n"]), max_size=60
).map(lambda parts: b"\n".join(parts))


@SETTINGS
@given(HEADERISH, st.integers(0, 5))
def test_blank_line_search_does_not_depend_on_the_window(data: bytes, start: int) -> None:
    start = min(start, len(data))
    for limit in (len(data), len(data) // 2):
        want = find_header_end(data, start, limit)
        try:
            for window in (1, 2, 3, 7):
                headers._WINDOW = window
                assert find_header_end(data, start, limit) == want
        finally:
            headers._WINDOW = _WINDOW
    want = find_header_end(data, start, len(data))
    if want[0] > start and want != (len(data), len(data)):
        assert want == _reference_end(data, start)


ADDRESS_CHARS = st.sampled_from(list('ab.@<> \t"(),:;[]\\-!\xe9\x85') + ["a@b", "<a@b>", "Ann "])


@SETTINGS
@given(st.lists(ADDRESS_CHARS, max_size=16).map("".join))
def test_address_fast_path_agrees_with_the_tokenizer(value: str) -> None:
    assert parse_addresses(value) == _parse_list(value)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("a@b.example", [(None, None, "a", "b.example")]),
        (" <a.b@c> ", [(None, None, "a.b", "c")]),
        ("Ann  Lee\t<ann@x>", [("Ann Lee", None, "ann", "x")]),
        ("Ann<ann@x>", [("Ann", None, "ann", "x")]),
    ],
)
def test_address_fast_path_shapes(value: str, want: list[tuple[str | None, ...]]) -> None:
    assert parse_addresses(value) == want == _parse_list(value)


def _reference_string(value: bytes | str) -> bytes:
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    if len(raw) > MAX_QUOTED or re.search(rb"[\x00\r\n\x80-\xff]", raw):
        raw = raw.replace(b"\x00", b"\x80")
        return b"{%d}\r\n%s" % (len(raw), raw)
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@SETTINGS
@given(st.one_of(st.binary(max_size=40), st.text(max_size=40), st.sampled_from(["text", "7bit"])))
def test_string_fast_paths(value: bytes | str) -> None:
    assert string(value) == _reference_string(value)
    assert string(b"x" * (MAX_QUOTED + 1)).startswith(b"{%d}" % (MAX_QUOTED + 1))
