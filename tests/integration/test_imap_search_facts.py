"""Header SEARCH answered from the facts' search values (no blob read) gives
the same result as parsing the header (RFC 3501 §6.4.4): on the whole corpus,
against the same messages stored with version 1 facts (which have no search
values, so the header is parsed), and with a per-delivery prefix that carries
a searched field (which the facts never saw)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from mailserver.imap import search_eval
from mailserver.imap.message import _SEARCH_CACHE
from mailserver.protocol.imap.types import SearchHeader, SearchNot, SearchOr
from mailserver.protocol.mime import SEARCH_FIELDS, analyze
from mailserver.store.model import NewMessage
from mailserver.store.store import Store

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
A = "alice@example.org"


def corpus() -> list[bytes]:
    files = sorted((CORPUS / "messages").glob("*.eml"))
    assert len(files) >= 100, f"test corpus missing at {CORPUS}"  # fail, never skip
    return [p.read_bytes() for p in files]


def as_v1(raw: bytes) -> bytes:
    head = 3 + 8 + struct.calcsize("<BqIII")
    (ls,) = struct.unpack_from("<I", raw, head)
    return b"MF\x01" + raw[3:head] + raw[head + 4 + ls :]


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path)
    await s.add_domain("example.org")
    await s.add_account(A, "h")
    await s.create_mailbox(A, "Old")
    yield s
    await s.close()


def needles(msgs: list[bytes]) -> list[tuple[str, str]]:
    """(field, needle) pairs taken from the corpus's own values, plus misses."""
    out = [("subject", ""), ("from", "zzzz-no-such"), ("bcc", "")]
    for blob in msgs[::7]:
        facts = analyze(blob)
        for name, values in zip(SEARCH_FIELDS, facts.search, strict=True):
            for v in values[:1]:
                words = v.split(" ")
                out.append((name, words[len(words) // 2][:12]))
    return out


def run(store: Store, mbid: int, key) -> list[int]:
    recs = store.list_messages(mbid)
    with store.snapshot() as snap:
        hits = search_eval.search(key, list(enumerate(recs, 1)), snap,
                                  largest_uid=recs[-1].uid)
    return [uid for _, uid in hits]


async def test_facts_and_header_parse_agree(store: Store) -> None:
    msgs = corpus()
    for blob in msgs:
        raw = analyze(blob).to_bytes()
        await store.append(A, "INBOX", blob, raw, internal_date=1)
    # Same bytes made distinct so they get their own (version 1) facts.
    for blob in msgs:
        other = b"X-Copy: 1\r\n" + blob
        await store.append(A, "Old", other, as_v1(analyze(other).to_bytes()), internal_date=1)
    new = store.get_mailbox(A, "INBOX").id
    old = store.get_mailbox(A, "Old").id
    _SEARCH_CACHE.clear()
    checked = 0
    for name, needle in needles(msgs):
        for key in (SearchHeader(name, needle), SearchNot(SearchHeader(name, needle)),
                    SearchOr(SearchHeader(name, needle), SearchHeader("x-copy", "2"))):
            fast = run(store, new, key)
            slow = run(store, old, key)
            assert fast == slow, (name, needle)
            checked += bool(fast)
    assert checked > 20  # the needles do find things


async def test_prefix_field_is_searched(store: Store) -> None:
    blob = b"From: a@example.net\r\nSubject: plain\r\n\r\nbody\r\n"
    facts = analyze(blob).to_bytes()
    await store.deliver([NewMessage(A, "INBOX", prefix=b"Subject: from-prefix\r\n")],
                        blob, facts, internal_date=1)
    await store.append(A, "INBOX", blob, facts, internal_date=2)
    mbid = store.get_mailbox(A, "INBOX").id
    assert run(store, mbid, SearchHeader("subject", "from-prefix")) == [1]
    assert run(store, mbid, SearchHeader("subject", "plain")) == [1, 2]
    assert run(store, mbid, SearchHeader("from", "example.net")) == [1, 2]
