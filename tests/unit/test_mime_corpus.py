"""Every shared-corpus message through ``analyze``: the facts parse as IMAP, round-trip,
and their part tree is consistent with the bytes and with BODYSTRUCTURE."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from imapclient.response_parser import parse_fetch_response
from imapclient.response_types import BodyData

from mailserver.protocol.imap.types import Section
from mailserver.protocol.mime import (
    LEAF,
    MESSAGE,
    MULTIPART,
    MessageFacts,
    Part,
    analyze,
    header_values,
    search_text,
    section_bytes,
)

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus").resolve()
MESSAGES = sorted((CORPUS / "messages").glob("*.eml"))
assert MESSAGES, f"shared corpus missing at {CORPUS}"

PREFIX = b"Return-Path: <bounce@example.org>\r\nDelivered-To: rcpt@example.net\r\n"
_LITERAL = re.compile(rb"\{(\d+)\}\r\n")


def imaplib_shape(data: bytes) -> list[bytes | tuple[bytes, bytes]]:
    """Split a response with literals the way imaplib hands it to imapclient:
    ``(text_ending_in_{n}, literal)`` tuples, then the trailing text."""
    out: list[bytes | tuple[bytes, bytes]] = []
    pos = 0
    while m := _LITERAL.search(data, pos):
        n = int(m.group(1))
        out.append((data[pos : m.start()] + b"{%d}" % n, data[m.end() : m.end() + n]))
        pos = m.end() + n
    out.append(data[pos:])
    return out


def message(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def by_name(prefix: str) -> bytes:
    return message(next(p for p in MESSAGES if p.name.startswith(prefix)))


def part_paths(root: Part) -> list[tuple[tuple[int, ...], Part]]:
    """Every (part number, part) as IMAP numbers them (RFC 3501 §6.4.5)."""
    out: list[tuple[tuple[int, ...], Part]] = []

    def body_parts(msg: Part, path: tuple[int, ...]) -> None:
        if msg.kind == MULTIPART:
            for i, c in enumerate(msg.children, 1):
                visit(c, path + (i,))
        else:
            visit(msg, path + (1,))

    def visit(p: Part, path: tuple[int, ...]) -> None:
        out.append((path, p))
        if p.kind == MULTIPART:
            for i, c in enumerate(p.children, 1):
                visit(c, path + (i,))
        elif p.kind == MESSAGE:
            body_parts(p.children[0], path)

    body_parts(root, ())
    return out


def check_tree(p: Part, lo: int, hi: int) -> None:
    assert lo <= p.header_start <= p.body_start <= p.end <= hi
    if p.kind == MESSAGE:
        (m,) = p.children
        assert m.header_start == p.body_start and m.end == p.end
        check_tree(m, p.body_start, p.end)
    elif p.kind == MULTIPART:
        prev = p.body_start
        for c in p.children:
            check_tree(c, prev, p.end)
            prev = c.end
    else:
        assert p.children == ()


def same_shape(ours: Part, theirs: object) -> None:
    """Our tree and imapclient's parse of our BODYSTRUCTURE agree."""
    if ours.kind == MULTIPART:
        assert theirs.is_multipart  # type: ignore[attr-defined]
        subs = theirs[0]  # type: ignore[index]
        if ours.children:
            assert len(subs) == len(ours.children)
            for a, b in zip(ours.children, subs, strict=True):
                same_shape(a, b)
    else:
        assert not theirs.is_multipart  # type: ignore[attr-defined]
        mtype = theirs[0].decode("latin-1").lower()  # type: ignore[index]
        sub = theirs[1].decode("latin-1").lower()  # type: ignore[index]
        assert f"{mtype}/{sub}" == ours.media_type
        assert theirs[6] == ours.end - ours.body_start  # type: ignore[index]
        if ours.kind == MESSAGE:
            same_shape(ours.children[0], BodyData.create(theirs[8]))  # type: ignore[index]


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name[:3])
def test_corpus_message(path: Path) -> None:
    blob = message(path)
    facts = analyze(blob)
    assert facts.size == len(blob)

    assert MessageFacts.from_bytes(facts.to_bytes()) == facts

    data = (
        b"1 (ENVELOPE " + facts.envelope
        + b" BODYSTRUCTURE " + facts.bodystructure
        + b" BODY " + facts.body + b")"
    )
    parsed = parse_fetch_response(imaplib_shape(data))[1]
    assert set(parsed) == {b"SEQ", b"ENVELOPE", b"BODYSTRUCTURE", b"BODY"}
    same_shape(facts.root, parsed[b"BODYSTRUCTURE"])
    same_shape(facts.root, parsed[b"BODY"])

    root = facts.root
    assert (root.header_start, root.end) == (0, len(blob))
    check_tree(root, 0, len(blob))

    stored = PREFIX + blob
    n = len(PREFIX)
    assert section_bytes(stored, facts, Section((), "HEADER"), n) == stored[: n + root.body_start]
    assert section_bytes(stored, facts, Section((), "TEXT"), n) == blob[root.body_start :]
    for num, part in part_paths(root):
        body = section_bytes(stored, facts, Section(num), n)
        assert body == blob[part.body_start : part.end], num
        mime = section_bytes(stored, facts, Section(num, "MIME"), n)
        assert mime is not None and stored.endswith(mime + body + stored[n + part.end :])
        if part.kind == MESSAGE:
            inner = part.children[0]
            hdr = section_bytes(stored, facts, Section(num, "HEADER"), n)
            assert hdr == blob[inner.header_start : inner.body_start]
    assert section_bytes(stored, facts, Section((len(root.children) + 2,)), n) is None

    assert isinstance(search_text(stored, facts), str)
    header = blob[: root.body_start]
    for name in ("from", "to", "subject", "date"):
        assert all(isinstance(v, str) for v in header_values(header, name))


def test_rfc2060_part_specifier_sample() -> None:
    blob = by_name("069-")
    facts = analyze(blob)
    seen = []
    for num, part in part_paths(facts.root):
        spec = ".".join(map(str, num))
        if part.kind == LEAF:
            body = section_bytes(blob, facts, Section(num))
            assert body is not None
            assert body.strip() == f"This part specifier should be: {spec}".encode()
            seen.append(spec)
        elif part.kind == MESSAGE:
            hdr = section_bytes(blob, facts, Section(num, "HEADER.FIELDS", ("SUBJECT",)))
            assert hdr == f"Subject: This part specifier should be: {spec}\n\r\n".encode()
    assert seen == ["1", "2", "3.1", "3.2", "4.1", "4.2.1", "4.2.2.1", "4.2.2.2"]


def test_corpus_envelope_samples() -> None:
    assert analyze(by_name("017-")).envelope.startswith(b'("Sat, 24 Mar 2007 23:00:00 +0200" "NiL"')
    empty_sender = analyze(by_name("014-")).envelope
    assert empty_sender.count(b'(("Real Name" NIL "user" "domain"))') == 3
    route = analyze(by_name("015-")).envelope
    assert b'((NIL "@route" "user" "domain"))' in route
    groups = analyze(by_name("013-")).envelope
    assert b'(NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")' in groups
    nohdr = analyze(by_name("024-"))
    assert nohdr.envelope == b"(" + b" ".join([b"NIL"] * 10) + b")"
    assert nohdr.root.body_start == 0


def test_corpus_structure_samples() -> None:
    prefix = analyze(by_name("097-")).root
    assert [c.kind for c in prefix.children] == [MULTIPART, LEAF]
    dashes = analyze(by_name("100-")).root
    assert dashes.children[0].kind == MULTIPART and len(dashes.children[0].children) == 1
    b64 = analyze(by_name("051-")).root
    assert b64.kind == LEAF or all(c.kind != MESSAGE for c in b64.children)
    big = analyze(by_name("083-"))
    leaves = [p for _, p in part_paths(big.root) if p.kind == LEAF]
    assert len(leaves) > 3000
