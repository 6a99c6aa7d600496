"""From: reading for RFC 6409 §6.1 sender ownership: the RFC 5322 §3.4
address-list parser in ``mailserver.protocol.smtp.sender``, by table and by hypothesis.

Several rows are ones where the stdlib's parsers answer differently on
3.11.2, 3.11.7 and 3.13 (the reason the module has its own parser): the
table pins one answer for every interpreter."""

from __future__ import annotations

import ast
import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.protocol.smtp import sender
from mailserver.protocol.smtp.sender import MAX_COMMENT_DEPTH, from_addresses, parse_address_list

SETTINGS = settings(max_examples=300, deadline=None)

# (field value, addr-specs, or None when it is not an address list)
PARSE_CASES = [
    ("alice@example.test", ["alice@example.test"]),
    ("Alice <alice@example.test>", ["alice@example.test"]),
    ('"Liddell, A" <alice@example.test>', ["alice@example.test"]),
    ("John Q. Public <jqp@example.test>", ["jqp@example.test"]),  # obs-phrase
    ("=?utf-8?q?J=C3=B6rg?= <j@example.test>", ["j@example.test"]),  # encoded word: atoms
    ("a@example.test, b@example.test", ["a@example.test", "b@example.test"]),
    ("a@example.test, , b@example.test,", ["a@example.test", "b@example.test"]),  # obs-addr-list
    ("alice@example.test (Alice (the (real) one))", ["alice@example.test"]),
    ("(c) alice (c) . (c) smith (c) @ (c) example (c) . (c) test (c)",
     ["alice.smith@example.test"]),  # CFWS inside obs-local-part and obs-domain
    ('"alice"@example.test', ["alice@example.test"]),  # canonical: same mailbox
    ('"al".ice@example.test', ["al.ice@example.test"]),
    ('"alice@example.test"@evil.test', ['"alice@example.test"@evil.test']),
    ('"a b"@example.test', ['"a b"@example.test']),
    ('"a\\"b"@example.test', ['"a\\"b"@example.test']),
    ('"a\\\\b"@example.test', ['"a\\\\b"@example.test']),
    ('""@example.test', ['""@example.test']),
    ("<@relay.test,@other.test:alice@example.test>", ["alice@example.test"]),  # obs-route
    ("Alice <alice@[192.0.2.1]>", ["alice@[192.0.2.1]"]),
    ("A B <a@[ 192.0.2.1 ]>", ["a@[192.0.2.1]"]),
    ("Friends: a@example.test, B <b@example.test>;", ["a@example.test", "b@example.test"]),
    ("Friends: a@example.test;, c@example.test", ["a@example.test", "c@example.test"]),
    ("undisclosed-recipients:;", []),
    ("jörg@exämple.test", ["jörg@exämple.test"]),  # RFC 6532
    ("", []),
    # Not address lists.
    ("alice@example.test <bob@example.test>", None),  # the ambiguous field
    ("a@example.test b@example.test", None),
    ('"x" a@example.test', None),
    ("garbage", None),
    ("a.@example.test", None),
    (".a@example.test", None),
    ("a..b@example.test", None),
    ("a@example..test", None),
    ("a@", None),
    ("@example.test", None),
    ("<alice@example.test", None),
    ("alice@example.test>", None),
    ("<alice@example.test>@evil.test", None),
    ("<>", None),
    ("Alice <>", None),
    ("<,alice@example.test>", None),
    ("a@example.test (unclosed", None),
    ('"unclosed@example.test', None),
    ("a@[unclosed", None),
    ("a@[a[b]", None),
    ("a@example.test)", None),
    ("a\\b@example.test", None),
    ("a@example.test\x00", None),
    ("a\x07@example.test", None),
    ("G: a@example.test", None),  # group without ";"
    ("G: H: a@example.test;;", None),  # nested group
    (": a@example.test;", None),  # group without a name
    ("(" * (MAX_COMMENT_DEPTH + 1) + ")" * (MAX_COMMENT_DEPTH + 1) + " a@example.test", None),
]


@pytest.mark.parametrize(("value", "expected"), PARSE_CASES)
def test_parse_address_list(value: str, expected: list[str] | None) -> None:
    assert parse_address_list(value) == expected


FROM_CASES = [
    (b"From: alice@example.test <bob@example.test>\r\n\r\n",
     ["", "alice@example.test", "bob@example.test"]),
    (b"From: a@example.test b@example.test\r\n\r\n", ["", "a@example.test", "b@example.test"]),
    (b"From: garbage\r\n\r\n", ["", ""]),
    (b"From: garbage, a@example.test\r\n\r\n", ["", "", "a@example.test"]),
    (b"From: undisclosed:;\r\n\r\n", ["", ""]),  # names nobody: refused
    (b"From:\r\n\r\n", [""]),
    (b"From: a@example.test\r\n\r\n", ["a@example.test"]),
    (b"FROM : a@example.test\r\n\r\n", ["a@example.test"]),  # obs-optional WSP
    (b"From: Al\r\n <al@example.test>,\r\n\tb@example.test\r\n\r\n",
     ["al@example.test", "b@example.test"]),
    (b"From: a@example.test\nSubject: x\n\nFrom: b@example.test\n", ["a@example.test"]),
    (b"\r\nFrom: a@example.test\r\n\r\n", []),  # empty first line: all body
    (b"Subject: x\r\n X-From: a@example.test\r\n\r\n", []),  # a continuation line
    ("From: jörg@exämple.test\r\n\r\n".encode(), ["jörg@exämple.test"]),
    (b"From: al\xffice@example.test\r\n\r\n", ["", "al\ufffdice@example.test"]),  # not UTF-8
]


@pytest.mark.parametrize(("message", "expected"), FROM_CASES)
def test_from_addresses(message: bytes, expected: list[str]) -> None:
    assert from_addresses(message) == expected


def test_no_stdlib_email_parser() -> None:
    # The point of the module: nothing whose answer moves with the patch level.
    tree = ast.parse(inspect.getsource(sender))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m == "email" or m.startswith("email.") for m in imported)


def test_unparseable_field_is_linear() -> None:
    # The lenient reader runs on attacker-sized fields: no backtracking blow-up.
    big = b"From: " + b"x" * 1_000_000 + b" <\r\n\r\n"
    assert from_addresses(big) == ["", ""]


# -- hypothesis ----------------------------------------------------------------

_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
atoms = st.text(st.sampled_from(_ATEXT + "éü中"), min_size=1, max_size=8)
qcontent = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("é\t"),
                   max_size=10)
comments = st.recursive(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                          exclude_characters="()\\"), max_size=6).map(lambda t: f"({t})"),
    lambda inner: st.lists(inner, min_size=1, max_size=3).map(lambda xs: "(" + " ".join(xs) + ")"),
    max_leaves=4,
)
cfws = st.one_of(st.just(""), st.just(" "), st.sampled_from(["\t", "  "]),
                 comments.map(lambda c: f" {c} "))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def local_parts(draw: st.DrawFn) -> tuple[str, str]:
    """(how it is written, its canonical form)"""
    words = draw(st.lists(st.one_of(atoms.map(lambda a: (a, a)),
                                    qcontent.map(lambda q: (_quote(q), q))),
                          min_size=1, max_size=3))
    sep = draw(st.sampled_from([".", " . ", "(c)."]))
    written = sep.join(w for w, _ in words)
    value = ".".join(v for _, v in words)
    if sender._DOT_ATOM.fullmatch(value):
        return written, value
    return written, _quote(value)


@st.composite
def domains(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return "[" + draw(st.ip_addresses(v=4)).exploded + "]"
    return ".".join(draw(st.lists(atoms, min_size=1, max_size=3)))


@st.composite
def mailboxes(draw: st.DrawFn) -> tuple[str, str]:
    """(written mailbox, its canonical addr-spec)"""
    written_local, local = draw(local_parts())
    domain = draw(domains())
    spec = f"{written_local}{draw(cfws)}@{draw(cfws)}{domain}"
    addr = f"{local}@{domain}"
    kind = draw(st.sampled_from(["bare", "angle", "named", "route"]))
    if kind == "bare":
        return f"{draw(cfws)}{spec}{draw(cfws)}", addr
    if kind == "route":
        return f"<@relay.test,@{domain}:{spec}>", addr
    name = ""
    if kind == "named":
        words = draw(st.lists(st.one_of(atoms, qcontent.map(_quote)), min_size=1, max_size=3))
        name = " ".join(words) + draw(cfws)
        if draw(st.booleans()):  # obs-phrase
            name = words[0] + ". " + name
    return f"{draw(cfws)}{name}<{draw(cfws)}{spec}{draw(cfws)}>{draw(cfws)}", addr


@st.composite
def address_lists(draw: st.DrawFn) -> tuple[str, list[str]]:
    items = draw(st.lists(st.one_of(
        mailboxes().map(lambda m: (m[0], [m[1]])),
        st.tuples(atoms, st.lists(mailboxes(), max_size=3)).map(
            lambda g: (f"{g[0]}: {', '.join(w for w, _ in g[1])};", [a for _, a in g[1]])),
    ), min_size=1, max_size=4))
    seps = draw(st.lists(st.sampled_from([",", ", ", " , ,"]), min_size=len(items),
                         max_size=len(items)))
    written = "".join(w + s for (w, _), s in zip(items, seps, strict=True))[:-len(seps[-1])]
    return written, [a for _, addrs in items for a in addrs]


@SETTINGS
@given(address_lists())
def test_valid_lists_parse_to_their_addresses(case: tuple[str, list[str]]) -> None:
    written, expected = case
    assert parse_address_list(written) == expected


@SETTINGS
@given(address_lists(), st.binary(max_size=40))
def test_from_field_whole_folded_and_with_trailing_data(
    case: tuple[str, list[str]], body: bytes
) -> None:
    written, expected = case
    field = f"From: {written}".encode()
    got = from_addresses(field + b"\r\n\r\n" + body)
    if expected:
        assert got == expected
    else:  # only empty groups: names nobody, refused
        assert "" in got
    # Folded at every space (RFC 5322 §2.2.3) the field says the same.
    folded = field.replace(b" ", b"\r\n ")
    assert from_addresses(b"Subject: x\r\n" + folded + b"\r\nTo: y\r\n\r\n" + body) == got


@SETTINGS
@given(mailboxes(), mailboxes())
def test_a_second_address_without_a_comma_is_never_owned(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    # "a@ours <b@theirs>" and every such run-on: refused, whatever the forms.
    got = from_addresses(f"From: {first[0]} {second[0]}\r\n\r\n".encode())
    assert "" in got


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_give_an_answer(data: bytes) -> None:
    got = from_addresses(b"From: " + data + b"\r\n\r\n")
    assert isinstance(got, list) and all(isinstance(a, str) for a in got)
    if "" not in got:  # accepted entries are addr-specs in canonical form
        for addr in got:
            assert parse_address_list(addr) == [addr]


@SETTINGS
@given(st.text(max_size=80))
def test_parser_never_raises_and_is_canonical(value: str) -> None:
    got = parse_address_list(value)
    if got is not None:
        for addr in got:
            assert parse_address_list(addr) == [addr]


@settings(max_examples=50, deadline=None)
@given(address_lists())
def test_truncated_messages_never_raise(case: tuple[str, list[str]]) -> None:
    msg = f"From: {case[0]}\r\n\r\n".encode()
    for cut in range(len(msg)):
        from_addresses(msg[:cut])
