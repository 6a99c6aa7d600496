"""``parse_path`` (RFC 5321 §4.1.2) against aiosmtpd's ``SMTP._getaddr``, which it replaces
on the hot path: same answer on every path in the grammar, ``None`` (left to
aiosmtpd) outside it."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.protocol.smtp_address import parse_path


class _Bare:
    local_part_limit = 0


def aiosmtpd_getaddr(arg: str) -> tuple[str | None, str | None]:
    return SMTP._getaddr(_Bare(), arg)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("", ("", "")),
        ("<a@b.example>", ("a@b.example", "")),
        ("<>", ("<>", "")),
        ("<> SIZE=100", ("<>", " SIZE=100")),  # aiosmtpd keeps the space after "<>"
        ("<a@b.example> SIZE=100 BODY=8BITMIME", ("a@b.example", "SIZE=100 BODY=8BITMIME")),
        ("<a@b.example>\tSMTPUTF8", ("a@b.example", "SMTPUTF8")),
        ("a@b.example", ("a@b.example", "")),
        ("a@b.example SIZE=1", ("a@b.example", "SIZE=1")),
        ("<@relay.example,@r2.example:a@b.example>", ("a@b.example", "")),  # source route
        ('<"john doe"@x.example>', ('"john doe"@x.example', "")),
        ('<"john"@x.example>', ("john@x.example", "")),
        ('<"a.b"@x.example>', ("a.b@x.example", "")),
        ('<"a\\"b"@x.example>', ('"a\\"b"@x.example', "")),
        ('<"a\\\\b"@x.example>', ('"a\\\\b"@x.example', "")),
        ('<"\\x"@x.example>', ("x@x.example", "")),
        ('<""@x.example>', ('""@x.example', "")),
        ("<j\u00f6rg@\u00e9xample.test>", ("j\u00f6rg@\u00e9xample.test", "")),  # RFC 6531
        ("<a@[192.0.2.1]>", ("a@[192.0.2.1]", "")),
        ("<a@[IPv6:2001:db8::1]>", ("a@[IPv6:2001:db8::1]", "")),
        ("<Postmaster>", ("Postmaster", "")),
        ("<postmaster> X", ("postmaster", "X")),
    ],
)
def test_paths(arg: str, expected: tuple[str, str]) -> None:
    assert parse_path(arg) == expected
    assert aiosmtpd_getaddr(arg) == expected


@pytest.mark.parametrize(
    "arg",
    [
        "<a@b.example",  # no ">": the adapter answers 501
        "<a@b.example>(comment)",
        "<a @b.example>",
        "< a@b.example>",
        "<a..b@c.example>",
        "<a@b.example.>",
        "<a@-b.example>",
        "<a@b@c.example>",
        "<not an address>",
        "x@remote.test>",
        "a@b .c",
        "a@b @c",
        '""@c.example',
        '<"a\rX-Injected: yes"@evil.example>',  # control characters: the handler's 501
        '<"a\x00"@b.example>',
        "<=?utf-8?q?x?=@b.example>",
        "<a\u00a0b@c.example>",
        "<postmaster",
        " <a@b.example>",
    ],
)
def test_outside_the_grammar_is_left_to_the_caller(arg: str) -> None:
    assert parse_path(arg) is None


# -- property: on every path of the grammar, the same answer as aiosmtpd --------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ATEXT = _ALNUM + "!#$%&'*+-/=?^_`{|}~"
_NON_ASCII = st.characters(min_codepoint=0x80, max_codepoint=0x2FFF, exclude_categories=("Cs",))
_QTEXT = "".join(chr(c) for c in range(32, 127) if c not in (34, 92))

atom = st.text(st.one_of(st.sampled_from(_ATEXT), _NON_ASCII), min_size=1, max_size=8)
dot_string = st.lists(atom, min_size=1, max_size=3).map(".".join)
quoted_string = st.lists(
    st.one_of(
        st.sampled_from(_QTEXT),
        _NON_ASCII,
        st.sampled_from([chr(c) for c in range(32, 127)]).map(lambda c: "\\" + c),
    ),
    max_size=8,
).map(lambda parts: '"' + "".join(parts) + '"')
sub_domain = st.one_of(
    st.sampled_from(_ALNUM),
    st.tuples(
        st.sampled_from(_ALNUM),
        st.text(st.sampled_from(_ALNUM + "-"), max_size=6),
        st.sampled_from(_ALNUM),
    ).map("".join),
    st.text(_NON_ASCII, min_size=1, max_size=4),  # U-label (RFC 6531)
)
domain = st.lists(sub_domain, min_size=1, max_size=3).map(".".join)
address_literal = st.one_of(
    st.ip_addresses(v=4).map(lambda ip: f"[{ip}]"),
    st.ip_addresses(v=6).map(lambda ip: f"[IPv6:{ip}]"),
    st.text(st.sampled_from(_ALNUM + "-.:"), min_size=1, max_size=10).map(lambda t: f"[x-{t}]"),
)
mailbox = st.tuples(st.one_of(dot_string, quoted_string), st.one_of(domain, address_literal)).map(
    "@".join
)
source_route = st.lists(domain.map("@".__add__), min_size=1, max_size=2).map(
    lambda ds: ",".join(ds) + ":"
)
path = st.one_of(
    st.tuples(st.one_of(st.just(""), source_route), mailbox).map(lambda t: f"<{t[0]}{t[1]}>"),
    st.just("<>"),
    st.sampled_from(["<postmaster>", "<Postmaster>", "<POSTMASTER>"]),
    mailbox,  # bare, as clients send it and aiosmtpd accepts it
)
parameters = st.lists(
    st.sampled_from(["SIZE=100", "BODY=8BITMIME", "SMTPUTF8", "AUTH=<>", "X"]), max_size=3
).map(lambda ps: "".join(" " + p for p in ps))


@settings(max_examples=1000, deadline=None)
@given(path, parameters)
def test_same_as_aiosmtpd_on_valid_paths(p: str, params: str) -> None:
    arg = p + params
    ours = parse_path(arg)
    if ours is None:
        # Only the readings aiosmtpd's RFC 5322 parser would make differently.
        assert "=?" in p or any(c.isspace() for c in p if not c.isascii()) or p == '""@' + p[3:]
        return
    assert ours == aiosmtpd_getaddr(arg)


@settings(max_examples=1000, deadline=None)
@given(st.text(st.one_of(st.sampled_from('<>@"\\.,:[] \t()=?' + _ATEXT[:8]), _NON_ASCII,
                         st.characters(max_codepoint=0x7F)), max_size=24))
def test_whatever_it_accepts_aiosmtpd_reads_the_same(arg: str) -> None:
    ours = parse_path(arg)
    if ours is not None:
        assert ours == aiosmtpd_getaddr(arg)


@pytest.mark.parametrize("arg", ["<a@b.example>", '<"a b"@c.example> SIZE=1', "a@b SIZE=1"])
@pytest.mark.parametrize("trailing", ["", " X=1", "  BODY=7BIT", "\tZ"])
def test_trailing_parameters(arg: str, trailing: str) -> None:
    assert parse_path(arg + trailing) == aiosmtpd_getaddr(arg + trailing)
