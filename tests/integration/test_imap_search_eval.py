"""SEARCH evaluation on a real store: every key family of RFC 3501 §6.4.4.

Messages are appended to a real LMDB ``Store`` in ``tmp_path`` with facts from
the real MIME analyser; ``search`` is called the way the IMAP session calls it.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailserver.imap.search_eval import search
from mailserver.protocol.imap.types import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModseq,
    SearchNot,
    SearchOr,
    SearchSeq,
    SearchSize,
    SearchText,
    SearchUid,
    SequenceSet,
)
from mailserver.protocol.mime import analyze
from mailserver.store.model import MessageRecord
from mailserver.store.store import Store

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus").resolve()
ACCOUNT = "alice@example.test"
UTC = dt.UTC


def ts(y: int, m: int, d: int, hh: int = 12, tz_minutes: int = 0) -> int:
    """POSIX seconds of local time y-m-d hh:00 in a zone tz_minutes east of UTC."""
    zone = dt.timezone(dt.timedelta(minutes=tz_minutes))
    return int(dt.datetime(y, m, d, hh, tzinfo=zone).timestamp())


B64_BODY = base64.b64encode("Grüße aus Köln, the secret word is Kumquat.\r\n".encode()).decode()

#: (blob, flags, internal date, tz offset): message N gets sequence number N.
MESSAGES: list[tuple[bytes, frozenset[str], int, int]] = [
    (
        b"From: Alice Example <alice@example.test>\r\n"
        b"To: Bob <bob@example.test>\r\n"
        b"Cc: carol@example.org\r\n"
        b"Subject: Quarterly report\r\n"
        b"Date: Mon, 01 Jan 2024 23:30:00 -0500\r\n"
        b"X-Priority: 1\r\n"
        b"\r\n"
        b"Numbers attached. Apricot.\r\n",
        frozenset({"\\Seen", "\\Answered"}),
        ts(2024, 1, 2, 1),
        0,
    ),
    (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>\r\n"
        b"To: alice@example.test\r\n"
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_K=F6ln?=\r\n"
        b"Date: Tue, 02 Jan 2024 08:00:00 +0100\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n" + B64_BODY.encode() + b"\r\n",
        frozenset({"\\Flagged", "$Important"}),
        ts(2024, 1, 2, 23, tz_minutes=-300),
        -300,
    ),
    (
        b"From: bob@example.test\r\n"
        b"To: alice@example.test\r\n"
        b"Subject: lunch?\r\n"
        b"\r\n"
        b"Pizza or   sushi, Alice?\r\n" + b"x" * 2000 + b"\r\n",
        frozenset({"\\Deleted", "\\Draft"}),
        ts(2024, 1, 3, 0, tz_minutes=120),
        120,
    ),
    (
        b"From: Multi Part <mp@example.net>\r\n"
        b"To: alice@example.test\r\n"
        b"Bcc: hidden@example.net\r\n"
        b"Subject: folded\r\n subject line\r\n"
        b"Date: 5 Jan 2024 10:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b1"\r\n'
        b"\r\n"
        b"--b1\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"plain part mentions Durian\r\n"
        b"--b1\r\n"
        b"Content-Type: text/html; charset=us-ascii\r\n"
        b"\r\n"
        b"<p>html part mentions <b>Elderberry</b></p>\r\n"
        b"--b1--\r\n",
        frozenset(),
        ts(2024, 1, 5, 10),
        0,
    ),
]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = await Store.open(tmp_path)
    try:
        await st.add_domain("example.test")
        await st.add_account(ACCOUNT, "not-a-real-hash")
        yield st
    finally:
        await st.close()


@pytest.fixture
async def mailbox(store: Store) -> list[tuple[int, MessageRecord]]:
    out = []
    for seq, (blob, flags, when, tz) in enumerate(MESSAGES, 1):
        rec, _ = await store.append(
            ACCOUNT,
            "INBOX",
            blob,
            analyze(blob).to_bytes(),
            flags=flags,
            internal_date=when,
            tz_offset=tz,
        )
        out.append((seq, rec))
    return out


def seqs(
    key: SearchKey, mailbox: list[tuple[int, MessageRecord]], store: Store, **kw: object
) -> list[int]:
    largest = max((r.uid for _, r in mailbox), default=0)
    got = search(key, mailbox, store, largest_uid=largest, **kw)  # type: ignore[arg-type]
    assert [u for _, u in got] == [dict(mailbox)[s].uid for s, _ in got]
    return [s for s, _ in got]


def seqset(*ranges: tuple[int | None, int | None]) -> SequenceSet:
    return SequenceSet(tuple(ranges))


async def test_all_and_sets(store: Store, mailbox) -> None:
    assert seqs(SearchAll(), mailbox, store) == [1, 2, 3, 4]
    assert seqs(SearchSeq(seqset((2, 3))), mailbox, store) == [2, 3]
    assert seqs(SearchSeq(seqset((None, None))), mailbox, store) == [4]
    assert seqs(SearchSeq(seqset((3, None), (1, 1))), mailbox, store) == [1, 3, 4]
    uids = [r.uid for _, r in mailbox]
    assert seqs(SearchUid(seqset((uids[1], uids[1]))), mailbox, store) == [2]
    assert seqs(SearchUid(seqset((None, None))), mailbox, store) == [4]
    # n:* with n above the largest UID still names the largest (RFC 3501 §6.4.8).
    assert seqs(SearchUid(seqset((uids[-1] + 100, None))), mailbox, store) == [4]
    assert seqs(SearchUid(seqset((uids[-1] + 1, uids[-1] + 9))), mailbox, store) == []


async def test_flags(store: Store, mailbox) -> None:
    assert seqs(SearchFlag("\\Seen"), mailbox, store) == [1]
    assert seqs(SearchFlag("\\Seen", False), mailbox, store) == [2, 3, 4]
    assert seqs(SearchFlag("\\Answered"), mailbox, store) == [1]
    assert seqs(SearchFlag("\\Flagged"), mailbox, store) == [2]
    assert seqs(SearchFlag("\\Deleted"), mailbox, store) == [3]
    assert seqs(SearchFlag("\\Draft"), mailbox, store) == [3]
    assert seqs(SearchFlag("$Important"), mailbox, store) == [2]
    # Keywords compare case-insensitively.
    assert seqs(SearchFlag("$important"), mailbox, store) == [2]
    assert seqs(SearchFlag("$Important", False), mailbox, store) == [1, 3, 4]
    # \Recent is session state: the session passes its recent UIDs.
    recent = {mailbox[3][1].uid}
    assert seqs(SearchFlag("\\Recent"), mailbox, store, recent=recent) == [4]
    new = SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False)))
    assert seqs(new, mailbox, store, recent=recent) == [4]
    old = SearchFlag("\\Recent", False)
    assert seqs(old, mailbox, store, recent=recent) == [1, 2, 3]


async def test_sizes_and_modseq(store: Store, mailbox) -> None:
    sizes = {s: r.size for s, r in mailbox}
    assert seqs(SearchSize(sizes[3] - 1, larger=True), mailbox, store) == [3]
    assert seqs(SearchSize(sizes[3], larger=True), mailbox, store) == []
    assert seqs(SearchSize(sizes[3], larger=False), mailbox, store) == [1, 2, 4]
    assert seqs(SearchSize(sizes[1], larger=False), mailbox, store) == sorted(
        s for s in sizes if sizes[s] < sizes[1]
    )
    mod = {s: r.modseq for s, r in mailbox}
    assert seqs(SearchModseq(mod[3]), mailbox, store) == [s for s in mod if mod[s] >= mod[3]]
    assert seqs(SearchModseq(0), mailbox, store) == [1, 2, 3, 4]


async def test_internal_dates_use_their_own_zone(store: Store, mailbox) -> None:
    # Message 2 arrived 2 Jan 23:00 at -0500 (3 Jan in UTC): its day is 2 Jan.
    # Message 3 arrived 3 Jan 00:00 at +0200 (2 Jan in UTC): its day is 3 Jan.
    on = lambda d: SearchDate("ON", dt.date(2024, 1, d))  # noqa: E731
    assert seqs(on(2), mailbox, store) == [1, 2]
    assert seqs(on(3), mailbox, store) == [3]
    assert seqs(on(4), mailbox, store) == []
    assert seqs(SearchDate("BEFORE", dt.date(2024, 1, 3)), mailbox, store) == [1, 2]
    assert seqs(SearchDate("SINCE", dt.date(2024, 1, 3)), mailbox, store) == [3, 4]
    assert seqs(SearchDate("SINCE", dt.date(2024, 1, 2)), mailbox, store) == [1, 2, 3, 4]
    assert seqs(SearchDate("BEFORE", dt.date(2024, 1, 2)), mailbox, store) == []


async def test_sent_dates_use_the_written_day(store: Store, mailbox) -> None:
    # Message 1 says Mon, 01 Jan 2024 23:30 -0500 (2 Jan in UTC): its day is 1 Jan.
    # Message 3 has no Date: header and matches no SENT* key.
    sent = lambda op, d: SearchDate(op, dt.date(2024, 1, d), sent=True)  # noqa: E731
    assert seqs(sent("ON", 1), mailbox, store) == [1]
    assert seqs(sent("ON", 2), mailbox, store) == [2]
    assert seqs(sent("BEFORE", 2), mailbox, store) == [1]
    assert seqs(sent("SINCE", 2), mailbox, store) == [2, 4]
    assert seqs(sent("SINCE", 6), mailbox, store) == []
    assert seqs(SearchNot(sent("SINCE", 1)), mailbox, store) == [3]


async def test_address_and_subject_headers(store: Store, mailbox) -> None:
    h = SearchHeader
    assert seqs(h("FROM", "alice"), mailbox, store) == [1]
    assert seqs(h("FROM", "ALICE EXAMPLE"), mailbox, store) == [1]
    assert seqs(h("TO", "alice@example.test"), mailbox, store) == [2, 3, 4]
    assert seqs(h("CC", "carol"), mailbox, store) == [1]
    assert seqs(h("BCC", "hidden"), mailbox, store) == [4]
    assert seqs(h("SUBJECT", "REPORT"), mailbox, store) == [1]
    # RFC 2047 decoded values; case-insensitive beyond ASCII.
    assert seqs(h("FROM", "jürgen müller"), mailbox, store) == [2]
    # i;unicode-casemap (RFC 5051): simple case mapping, so ß is not ss.
    assert seqs(h("SUBJECT", "GRÜßE"), mailbox, store) == [2]
    assert seqs(h("SUBJECT", "GRÜSSE"), mailbox, store) == []
    assert seqs(h("SUBJECT", "grüße aus köln"), mailbox, store) == [2]
    # Folded values are unfolded.
    assert seqs(h("SUBJECT", "folded subject line"), mailbox, store) == [4]
    assert seqs(h("SUBJECT", "nothing like this"), mailbox, store) == []


async def test_arbitrary_header(store: Store, mailbox) -> None:
    assert seqs(SearchHeader("X-PRIORITY", "1"), mailbox, store) == [1]
    assert seqs(SearchHeader("x-priority", ""), mailbox, store) == [1]
    # Empty string: every message having the field (RFC 3501 §6.4.4).
    assert seqs(SearchHeader("DATE", ""), mailbox, store) == [1, 2, 4]
    assert seqs(SearchHeader("MIME-VERSION", ""), mailbox, store) == [2, 4]
    assert seqs(SearchHeader("X-NOPE", ""), mailbox, store) == []


async def test_body_and_text(store: Store, mailbox) -> None:
    assert seqs(SearchText("apricot"), mailbox, store) == [1]
    # Transfer-decoded and charset-decoded body.
    assert seqs(SearchText("kumquat"), mailbox, store) == [2]
    assert seqs(SearchText("GRÜßE AUS"), mailbox, store) == [2]
    assert seqs(SearchText("GRÜSSE AUS"), mailbox, store) == []  # RFC 5051: ß is not ss
    assert seqs(SearchText("köln"), mailbox, store) == [2]
    # White space runs compare as one space.
    assert seqs(SearchText("pizza or sushi"), mailbox, store) == [3]
    # Every text part of a multipart.
    assert seqs(SearchText("durian"), mailbox, store) == [4]
    assert seqs(SearchText("elderberry"), mailbox, store) == [4]
    # BODY does not look at the header; TEXT does.
    assert seqs(SearchText("quarterly"), mailbox, store) == []
    assert seqs(SearchText("quarterly", header=True), mailbox, store) == [1]
    assert seqs(SearchText("x-priority", header=True), mailbox, store) == [1]
    assert seqs(SearchText("Jürgen", header=True), mailbox, store) == [2]
    assert seqs(SearchText("apricot", header=True), mailbox, store) == [1]


async def test_not_or_and(store: Store, mailbox) -> None:
    seen = SearchFlag("\\Seen")
    flagged = SearchFlag("\\Flagged")
    assert seqs(SearchNot(seen), mailbox, store) == [2, 3, 4]
    assert seqs(SearchOr(seen, flagged), mailbox, store) == [1, 2]
    assert seqs(SearchNot(SearchOr(seen, flagged)), mailbox, store) == [3, 4]
    assert seqs(SearchAnd((SearchNot(seen), SearchText("durian"))), mailbox, store) == [4]
    assert seqs(
        SearchOr(SearchText("apricot"), SearchAnd((SearchHeader("TO", "alice"), flagged))),
        mailbox,
        store,
    ) == [1, 2]
    assert seqs(SearchAnd(()), mailbox, store) == [1, 2, 3, 4]
    nested = SearchAnd((SearchSeq(seqset((1, 3))), SearchOr(SearchNot(seen), flagged)))
    assert seqs(nested, mailbox, store) == [2, 3]


async def test_cheap_keys_decide_first(store: Store, mailbox) -> None:
    """A content key behind a failing flag key never loads the message: a
    record whose blob does not exist would otherwise be found missing."""
    (seq, rec) = mailbox[0]
    ghost = MessageRecord(
        mailbox_id=rec.mailbox_id,
        uid=rec.uid + 1000,
        flags=frozenset(),
        internal_date=rec.internal_date,
        tz_offset=0,
        size=10,
        modseq=rec.modseq,
        blob_id=b"\x00" * 32,
        prefix=b"",
    )
    key = SearchAnd((SearchText("anything"), SearchFlag("\\Seen")))
    assert search(key, [(1, ghost)], store, largest_uid=ghost.uid) == []
    key = SearchOr(SearchText("anything"), SearchFlag("\\Seen", False))
    assert search(key, [(1, ghost)], store, largest_uid=ghost.uid) == [(1, ghost.uid)]


async def test_corpus_subjects(store: Store) -> None:
    """Decoded subjects of real messages (RFC 2047 with a language tag, UTF-16)."""
    paths = sorted((CORPUS / "messages").glob("*.eml"))
    assert paths, f"shared corpus missing at {CORPUS}"
    chosen = [p for p in paths if p.name[:4] in ("001-", "056-", "063-")]
    box = []
    for seq, p in enumerate(chosen, 1):
        blob = p.read_bytes()
        rec, _ = await store.append(
            ACCOUNT, "INBOX", blob, analyze(blob).to_bytes(), internal_date=ts(2024, 1, 1)
        )
        box.append((seq, rec))
    assert seqs(SearchHeader("SUBJECT", "saying hello"), box, store) == [1]
    assert seqs(SearchHeader("SUBJECT", "domače"), box, store) == [2]
    assert seqs(SearchHeader("SUBJECT", "design and manufacturing"), box, store) == [3]
    assert seqs(SearchHeader("FROM", "jdoe@machine.example"), box, store) == [1]
    assert seqs(SearchDate("ON", dt.date(1997, 11, 21), sent=True), box, store) == [1]
    assert seqs(SearchText("hello", header=True), box, store)[:1] == [1]
