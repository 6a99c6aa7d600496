"""FETCH rendering on a real store: ``render_fetch`` and ``sets_seen``.

Messages go into a real LMDB ``Store`` opened in ``tmp_path`` (with facts from
the real MIME analyser); the responses are parsed back with imapclient's
response parser, the way a client would see them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from imapclient.response_parser import parse_fetch_response

from mailserver.errors import UserError
from mailserver.imap.fetch_render import _decode_base64, render_fetch, sets_seen
from mailserver.imap.message import MessageAccess
from mailserver.protocol.imap.types import FetchAtt, Section
from mailserver.protocol.mime import analyze
from mailserver.store.model import MessageRecord, NewMessage
from mailserver.store.store import Store

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus").resolve()
ACCOUNT = "alice@example.test"
WHEN = 1_700_000_000  # 2023-11-14 22:13:20 UTC

SIMPLE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@example.test\r\n"
    b"Subject: hello\r\n"
    b"X-Empty:\r\n"
    b"\r\n"
    b"Body line one\r\n"
    b"Body line two\r\n"
)


def corpus_file(prefix: str) -> bytes:
    paths = sorted((CORPUS / "messages").glob(f"{prefix}*.eml"))
    assert paths, f"corpus message {prefix} missing under {CORPUS}"
    return paths[0].read_bytes()


def all_corpus() -> list[Path]:
    paths = sorted((CORPUS / "messages").glob("*.eml"))
    assert paths, f"shared corpus missing at {CORPUS}"
    return paths


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = await Store.open(tmp_path)
    try:
        await st.add_domain("example.test")
        await st.add_account(ACCOUNT, "not-a-real-hash")
        yield st
    finally:
        await st.close()


async def put(
    store: Store,
    blob: bytes,
    *,
    flags: frozenset[str] = frozenset(),
    when: int = WHEN,
    tz: int = 0,
    prefix: bytes = b"",
) -> MessageRecord:
    facts = analyze(blob).to_bytes()
    if prefix:
        (rec,) = await store.deliver(
            [NewMessage(ACCOUNT, "INBOX", prefix=prefix, flags=flags)],
            blob,
            facts,
            internal_date=when,
            tz_offset=tz,
        )
        return rec
    rec, _ = await store.append(
        ACCOUNT, "INBOX", blob, facts, flags=flags, internal_date=when, tz_offset=tz
    )
    return rec


_LITERAL_END = re.compile(rb"\{(\d+)\}\r\n")


def split_like_imaplib(raw: bytes) -> list[bytes | tuple[bytes, bytes]]:
    """Shape one untagged FETCH response the way imaplib hands it to imapclient:
    ``b"1 (..."`` without ``* `` and ``FETCH``, literals as (line, data) tuples."""
    assert raw.startswith(b"* ") and raw.endswith(b"\r\n"), raw[:80]
    seq, word, rest = raw[2:].split(b" ", 2)
    assert word == b"FETCH"
    text = seq + b" " + rest[:-2]
    out: list[bytes | tuple[bytes, bytes]] = []
    pos = 0
    while True:
        m = _LITERAL_END.search(text, pos)
        if m is None:
            out.append(text[pos:])
            return out
        n = int(m.group(1))
        out.append((text[pos : m.start()] + b"{%d}" % n, text[m.end() : m.end() + n]))
        pos = m.end() + n


def parse(raw: bytes) -> dict[bytes, object]:
    """The items of one FETCH response, keyed by name; checks it is one line-set."""
    parsed = parse_fetch_response(split_like_imaplib(raw), uid_is_key=False)
    assert len(parsed) == 1
    return next(iter(parsed.values()))


def fetch(access: MessageAccess, *atts: FetchAtt, seq: int = 1, **kw: object) -> bytes:
    return render_fetch(seq, access, atts, **kw)  # type: ignore[arg-type]


WHOLE = Section()


def body(section: Section = WHOLE, *, peek: bool = False, partial=None) -> FetchAtt:
    return FetchAtt("BODY", section=section, peek=peek, partial=partial)


# ------------------------------------------------------------------- simple items


async def test_record_items(store: Store) -> None:
    rec = await put(store, SIMPLE, flags=frozenset({"\\Seen", "$Label"}), tz=-420)
    acc = MessageAccess(store, rec)
    raw = fetch(
        acc,
        FetchAtt("FLAGS"),
        FetchAtt("UID"),
        FetchAtt("INTERNALDATE"),
        FetchAtt("RFC822.SIZE"),
        FetchAtt("MODSEQ"),
        seq=7,
    )
    assert raw.startswith(b"* 7 FETCH (FLAGS (")
    # None of these needs the message bytes.
    assert not acc.loaded
    item = parse(raw)
    assert item[b"SEQ"] == 7
    assert set(item[b"FLAGS"]) == {b"\\Seen", b"$Label"}
    assert item[b"UID"] == rec.uid
    assert item[b"RFC822.SIZE"] == len(SIMPLE)
    assert item[b"MODSEQ"] == (rec.modseq,)
    # RFC 3501 §7.4.2: INTERNALDATE in the zone it was received in.
    assert b'INTERNALDATE "14-Nov-2023 15:13:20 -0700"' in raw
    got = item[b"INTERNALDATE"]
    assert isinstance(got, dt.datetime)


async def test_flags_argument_overrides_record(store: Store) -> None:
    rec = await put(store, SIMPLE)
    raw = fetch(MessageAccess(store, rec), FetchAtt("FLAGS"), flags=frozenset({"\\Seen"}))
    assert raw == b"* 1 FETCH (FLAGS (\\Seen))\r\n"
    raw = fetch(MessageAccess(store, rec), FetchAtt("FLAGS"))
    assert raw == b"* 1 FETCH (FLAGS ())\r\n"


async def test_uid_always_and_duplicates(store: Store) -> None:
    rec = await put(store, SIMPLE)
    acc = MessageAccess(store, rec)
    raw = fetch(acc, FetchAtt("FLAGS"), uid_always=True)
    assert raw == b"* 1 FETCH (UID %d FLAGS ())\r\n" % rec.uid
    # Asked explicitly: not repeated, kept in place.
    raw = fetch(acc, FetchAtt("FLAGS"), FetchAtt("UID"), FetchAtt("UID"), uid_always=True)
    assert raw == b"* 1 FETCH (FLAGS () UID %d)\r\n" % rec.uid
    raw = fetch(acc, body(peek=True), body())
    assert raw.count(b"BODY[]") == 1


async def test_whole_message_items(store: Store) -> None:
    rec = await put(store, SIMPLE)
    item = parse(
        fetch(
            MessageAccess(store, rec),
            FetchAtt("RFC822"),
            FetchAtt("RFC822.HEADER"),
            FetchAtt("RFC822.TEXT"),
            body(),
            body(Section(text="HEADER")),
            body(Section(text="TEXT")),
        )
    )
    head, text = SIMPLE.split(b"\r\n\r\n", 1)
    assert item[b"RFC822"] == SIMPLE
    assert item[b"BODY[]"] == SIMPLE
    assert item[b"RFC822.HEADER"] == head + b"\r\n\r\n"
    assert item[b"BODY[HEADER]"] == head + b"\r\n\r\n"
    assert item[b"RFC822.TEXT"] == text
    assert item[b"BODY[TEXT]"] == text


async def test_peek_is_not_echoed(store: Store) -> None:
    rec = await put(store, SIMPLE)
    raw = fetch(MessageAccess(store, rec), body(Section(text="TEXT"), peek=True))
    assert b"PEEK" not in raw
    assert raw.startswith(b"* 1 FETCH (BODY[TEXT] {")


async def test_header_fields_and_not(store: Store) -> None:
    rec = await put(store, SIMPLE)
    acc = MessageAccess(store, rec)
    item = parse(
        fetch(
            acc,
            body(Section(text="HEADER.FIELDS", fields=("SUBJECT", "FROM")), peek=True),
            body(Section(text="HEADER.FIELDS.NOT", fields=("SUBJECT", "FROM", "X-EMPTY"))),
            body(Section(text="HEADER.FIELDS", fields=("X-NOPE",))),
        )
    )
    # Message order, not the order asked; the blank line is kept (§6.4.5).
    assert item[b"BODY[HEADER.FIELDS (SUBJECT FROM)]"] == (
        b"From: Alice <alice@example.test>\r\nSubject: hello\r\n\r\n"
    )
    assert item[b"BODY[HEADER.FIELDS.NOT (SUBJECT FROM X-EMPTY)]"] == (
        b"To: bob@example.test\r\n\r\n"
    )
    assert item[b"BODY[HEADER.FIELDS (X-NOPE)]"] == b"\r\n"


async def test_partials(store: Store) -> None:
    rec = await put(store, SIMPLE)
    acc = MessageAccess(store, rec)
    raw = fetch(acc, body(partial=(0, 10)))
    assert raw == b"* 1 FETCH (BODY[]<0> {10}\r\n" + SIMPLE[:10] + b")\r\n"
    raw = fetch(acc, body(partial=(5, 7)))
    assert raw == b"* 1 FETCH (BODY[]<5> {7}\r\n" + SIMPLE[5:12] + b")\r\n"
    # Truncated at the end; still answered as a partial (§6.4.5 note).
    n = len(SIMPLE)
    raw = fetch(acc, body(partial=(n - 3, 100)))
    assert raw == b"* 1 FETCH (BODY[]<%d> {3}\r\n" % (n - 3) + SIMPLE[-3:] + b")\r\n"
    # Origin beyond the end: an empty string.
    raw = fetch(acc, body(partial=(n + 10, 5)))
    assert raw == b'* 1 FETCH (BODY[]<%d> "")\r\n' % (n + 10)
    raw = fetch(acc, body(Section(text="TEXT"), partial=(0, 4)))
    assert raw == b"* 1 FETCH (BODY[TEXT]<0> {4}\r\nBody)\r\n"


async def test_missing_part_is_nil(store: Store) -> None:
    rec = await put(store, SIMPLE)
    acc = MessageAccess(store, rec)
    raw = fetch(acc, body(Section(part=(3,))), body(Section(part=(2, 1), text="MIME")))
    assert raw == b"* 1 FETCH (BODY[3] NIL BODY[2.1.MIME] NIL)\r\n"
    item = parse(raw)
    assert item[b"BODY[3]"] is None


async def test_non_multipart_part_one_is_body(store: Store) -> None:
    rec = await put(store, SIMPLE)
    item = parse(fetch(MessageAccess(store, rec), body(Section(part=(1,)))))
    assert item[b"BODY[1]"] == SIMPLE.split(b"\r\n\r\n", 1)[1]


async def test_rfc2060_part_specifiers(store: Store) -> None:
    blob = corpus_file("069-")
    rec = await put(store, blob)
    acc = MessageAccess(store, rec)

    def part(*nums: int, text: str | None = None) -> bytes | None:
        sect = Section(part=nums, text=text)
        return parse(fetch(acc, body(sect)))[FetchAtt("BODY", section=sect).response_name()]

    for nums in ((1,), (2,), (3, 1), (3, 2), (4, 1), (4, 2, 1), (4, 2, 2, 1), (4, 2, 2, 2)):
        label = ".".join(map(str, nums)).encode()
        assert part(*nums) == b"This part specifier should be: " + label + b"\n", label
    assert part(4, 1, text="MIME") == b"Content-Type: IMAGE/GIF\n\n"
    assert part(3, text="HEADER").startswith(b"From: me@myself.com\nTo: me@myself.com\n")
    assert part(3, text="HEADER").endswith(b'boundary="3.x"\n\n')
    assert part(4, 2, text="HEADER").count(b"Subject: This part specifier should be: 4.2") == 1
    assert part(3, text="TEXT").startswith(b"--3.x\nContent-Type: TEXT/PLAIN\n")
    assert part(3).startswith(b"From: me@myself.com\n")
    assert part(5) is None
    assert part(4, 3) is None
    # BODYSTRUCTURE as a client sees it.
    bs = parse(fetch(acc, FetchAtt("BODYSTRUCTURE")))[b"BODYSTRUCTURE"]
    assert bs.is_multipart
    assert len(bs[0]) == 4


async def test_prefix_is_part_of_the_header(store: Store) -> None:
    prefix = b"Return-Path: <sender@example.org>\r\nDelivered-To: alice@example.test\r\n"
    rec = await put(store, SIMPLE, prefix=prefix)
    acc = MessageAccess(store, rec)
    item = parse(
        fetch(
            acc,
            FetchAtt("RFC822.SIZE"),
            body(),
            body(Section(text="HEADER")),
            body(Section(text="TEXT")),
            body(Section(text="HEADER.FIELDS", fields=("RETURN-PATH", "SUBJECT"))),
        )
    )
    assert item[b"RFC822.SIZE"] == len(prefix) + len(SIMPLE)
    assert item[b"BODY[]"] == prefix + SIMPLE
    assert item[b"BODY[HEADER]"] == prefix + SIMPLE.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert item[b"BODY[TEXT]"] == SIMPLE.split(b"\r\n\r\n", 1)[1]
    assert item[b"BODY[HEADER.FIELDS (RETURN-PATH SUBJECT)]"] == (
        b"Return-Path: <sender@example.org>\r\nSubject: hello\r\n\r\n"
    )


async def test_envelope_body_bodystructure_simple(store: Store) -> None:
    rec = await put(store, SIMPLE)
    item = parse(
        fetch(
            MessageAccess(store, rec),
            FetchAtt("ENVELOPE"),
            FetchAtt("BODY"),
            FetchAtt("BODYSTRUCTURE"),
        )
    )
    env = item[b"ENVELOPE"]
    assert env.subject == b"hello"
    assert env.from_[0].mailbox == b"alice" and env.from_[0].host == b"example.test"
    assert env.to[0].mailbox == b"bob"
    assert item[b"BODY"][0].lower() == b"text" and item[b"BODY"][1].lower() == b"plain"
    assert not item[b"BODYSTRUCTURE"].is_multipart


async def test_every_corpus_message(store: Store) -> None:
    """BODY[] is the exact bytes; ENVELOPE, BODY and BODYSTRUCTURE parse in
    imapclient; the size matches; every leaf part named by BODYSTRUCTURE
    exists."""
    atts = (
        FetchAtt("UID"),
        FetchAtt("RFC822.SIZE"),
        FetchAtt("ENVELOPE"),
        FetchAtt("BODY"),
        FetchAtt("BODYSTRUCTURE"),
        body(peek=True),
        body(Section(text="HEADER"), peek=True),
        body(Section(text="TEXT"), peek=True),
    )
    for seq, path in enumerate(all_corpus(), 1):
        blob = path.read_bytes()
        rec = await put(store, blob)
        raw = render_fetch(seq, MessageAccess(store, rec), atts)
        item = parse(raw)
        # NUL is not a CHAR8 (RFC 3501 §9): sent as 0x80, same length.
        sent = blob.replace(b"\0", b"\x80")
        assert item[b"BODY[]"] == sent, path.name
        assert item[b"RFC822.SIZE"] == len(blob), path.name
        assert item[b"UID"] == rec.uid
        header, text = item[b"BODY[HEADER]"], item[b"BODY[TEXT]"]
        assert header + text == sent, path.name
        assert item[b"BODYSTRUCTURE"] is not None and item[b"BODY"] is not None


def test_sets_seen() -> None:
    assert sets_seen([body()])
    assert sets_seen([FetchAtt("FLAGS"), body(Section(part=(1,)), partial=(0, 5))])
    assert sets_seen([FetchAtt("RFC822")])
    assert sets_seen([FetchAtt("RFC822.TEXT")])
    assert not sets_seen([body(peek=True)])
    assert not sets_seen([FetchAtt("RFC822.HEADER"), FetchAtt("RFC822.SIZE")])
    assert not sets_seen([FetchAtt("BODY"), FetchAtt("BODYSTRUCTURE"), FetchAtt("ENVELOPE")])
    assert not sets_seen([])


BINARY_MSG = (
    b"From: a@example.test\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="zz"\r\n'
    b"\r\n"
    b"--zz\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Gr=C3=BC=C3=9Fe, soft=\r\n"
    b"break\r\n"
    b"--zz\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAEC/w==\r\n"
    b"--zz\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: x-rot13\r\n"
    b"\r\n"
    b"uryyb\r\n"
    b"--zz\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"as is\r\n"
    b"--zz--\r\n"
)


def binary(*part: int, peek: bool = True, partial=None) -> FetchAtt:
    return FetchAtt("BINARY", section=Section(part=part), peek=peek, partial=partial)


async def test_binary_decodes_leaf_parts(store: Store) -> None:
    rec = await put(store, BINARY_MSG)
    acc = MessageAccess(store, rec)
    raw = fetch(acc, binary(1), binary(4), FetchAtt("BINARY.SIZE", section=Section(part=(1,))))
    qp = "Grüße, softbreak".encode()
    assert raw == (
        b"* 1 FETCH (BINARY[1] {%d}\r\n" % len(qp) + qp + b" BINARY[4] {5}\r\nas is"
        b" BINARY.SIZE[1] %d)\r\n" % len(qp)
    )
    # NUL in the decoded octets: a literal8 (RFC 3516 §4.2).
    raw = fetch(acc, binary(2), binary(2, partial=(1, 2)), binary(7))
    assert (
        raw
        == b"* 1 FETCH (BINARY[2] ~{4}\r\n\x00\x01\x02\xff BINARY[2]<1> {2}\r\n\x01\x02 BINARY[7] NIL)\r\n"
    )
    with pytest.raises(UserError) as info:
        fetch(acc, binary(3))
    assert info.value.imap_code == "UNKNOWN-CTE"
    assert (
        fetch(acc, binary())
        == b"* 1 FETCH (BINARY[] {%d}\r\n" % len(BINARY_MSG) + BINARY_MSG + b")\r\n"
    )
    assert sets_seen([binary(1, peek=False)])
    assert not sets_seen([binary(1), FetchAtt("BINARY.SIZE", section=Section(part=(1,)))])


def test_lenient_base64() -> None:
    assert _decode_base64(b"AAEC/w==\r\n") == b"\x00\x01\x02\xff"
    assert _decode_base64(b"aGVs\r\nbG8*!") == b"hello"
    assert _decode_base64(b"aGVsbG8") == b"hello"
    assert _decode_base64(b"aGVsbG8=trailing garbage") == b"hello"
    assert _decode_base64(b"aGVsb") == b"hel"
    assert _decode_base64(b"") == b""
