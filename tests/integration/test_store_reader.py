"""The store's bulk read paths on a real store: ``list_flags`` (SELECT),
``mailbox_counts`` (STATUS UNSEEN/DELETED/RECENT, RFC 3501 §6.3.10),
``snapshot`` (one read transaction) and ``current_records`` (the record cache
kept up to date by MODSEQ, RFC 7162 §3.1), including writes made through
another ``Store`` on the same directory (another process)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from support.stores import open_store

from mailserver.errors import MailboxNotFound, NotFound
from mailserver.protocol.mime import analyze
from mailserver.store.recordcache import RecordCache
from mailserver.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / ".." / "shared" / "corpus"
A = "alice@example.org"

#: Another process writing to the same store: flags on UID 4, one APPEND.
_OTHER = """
import asyncio, sys
from pathlib import Path
from mailserver.store.store import Store

async def main():
    s = await Store.open(Path(sys.argv[1]))
    try:
        mbid = s.get_mailbox("alice@example.org", "INBOX").id
        await s.store_flags(mbid, [4], "set", frozenset({"\\\\Answered"}))
        await s.append("alice@example.org", "INBOX", b"Subject: afar\\r\\n\\r\\n.\\r\\n",
                       b"", internal_date=1)
    finally:
        await s.close()

asyncio.run(main())
"""


async def other_process(data_dir: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OTHER, str(data_dir),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert await asyncio.wait_for(proc.wait(), 60) == 0


def corpus() -> list[bytes]:
    files = sorted((CORPUS / "messages").glob("*.eml"))
    assert len(files) >= 100, f"test corpus missing at {CORPUS}"  # fail, never skip
    return [p.read_bytes() for p in files]


@pytest.fixture
async def store(tmp_path):
    async with open_store(tmp_path, A) as s:
        yield s


async def fill(store: Store, n: int) -> int:
    msgs = corpus()
    for i in range(n):
        blob = msgs[i % len(msgs)]
        flags = {"\\Seen"} if i % 3 == 0 else set()
        if i % 5 == 0:
            flags |= {"$Label1", "\\Deleted"}
        await store.append(A, "INBOX", blob, analyze(blob).to_bytes(),
                           flags=frozenset(flags), internal_date=1_700_000_000 + i)
    return store.get_mailbox(A, "INBOX").id


def expected_counts(store: Store, mbid: int) -> tuple[int, int, int, int, int]:
    recs = store.list_messages(mbid)
    boundary = store.recent_boundary(mbid)
    deleted = [r for r in recs if "\\Deleted" in r.flags]
    return (len(recs), sum("\\Seen" not in r.flags for r in recs), len(deleted),
            sum(r.size for r in deleted), sum(r.uid > boundary for r in recs))


async def test_list_flags_equals_records(store: Store) -> None:
    mbid = await fill(store, 40)
    uids, flags = store.list_flags(mbid)
    recs = store.list_messages(mbid)
    assert uids == [r.uid for r in recs]
    assert flags == [r.flags for r in recs]
    assert store.list_flags(999_999) == ([], [])


async def test_counts_follow_writes(store: Store) -> None:
    mbid = await fill(store, 30)
    c = store.mailbox_counts(mbid)
    assert (c.messages, c.unseen, c.deleted, c.deleted_size, c.recent) == \
        expected_counts(store, mbid)
    assert c.recent == 30
    await store.claim_recent(mbid, 12)
    await store.store_flags(mbid, range(1, 31), "add", frozenset({"\\Seen"}))
    await store.store_flags(mbid, [2, 3], "add", frozenset({"\\Deleted"}))
    c = store.mailbox_counts(mbid)
    assert (c.messages, c.unseen, c.deleted, c.deleted_size, c.recent) == \
        expected_counts(store, mbid)
    assert c.unseen == 0 and c.recent == 18
    await store.expunge(mbid)
    c = store.mailbox_counts(mbid)
    assert c.deleted == 0 and c.deleted_size == 0
    assert c.messages == store.get_mailbox(A, "INBOX").messages
    empty = store.mailbox_counts(999_999)
    assert (empty.messages, empty.unseen, empty.recent) == (0, 0, 0)


async def test_snapshot_reads_like_store(store: Store) -> None:
    mbid = await fill(store, 20)
    recs = store.list_messages(mbid)
    with store.snapshot() as snap:
        for r in recs:
            assert snap.get_blob(r.blob_id) == store.get_blob(r.blob_id)
            assert bytes(snap.get_facts(r.blob_id)) == store.get_facts(r.blob_id)
        with pytest.raises(NotFound):
            snap.get_blob(b"\0" * 32)
        with pytest.raises(NotFound):
            snap.get_facts(b"\0" * 32)


async def test_current_records_follow_every_write(store: Store, tmp_path: Path) -> None:
    mbid = await fill(store, 25)
    assert store.current_records(mbid) == {r.uid: r for r in store.list_messages(mbid)}
    await store.store_flags(mbid, [1, 2, 3], "add", frozenset({"$X"}))
    store.current_records(mbid)
    await other_process(tmp_path)
    assert store.current_records(mbid)[4].flags == frozenset({"\\Answered"})
    await store.expunge(mbid)
    await store.move(mbid, [7, 8], A, "Trash")
    got = store.current_records(mbid)
    assert got == {r.uid: r for r in store.list_messages(mbid)}
    assert list(got) == sorted(got)  # ascending UID
    assert 26 in got  # the other process's APPEND
    trash = store.get_mailbox(A, "Trash").id
    assert list(store.current_records(trash)) == [r.uid for r in store.list_messages(trash)]
    await store.delete_mailbox(A, "Trash")
    with pytest.raises(MailboxNotFound):
        store.current_records(trash)
    await store.rename_mailbox(A, "INBOX", "Old")  # INBOX's messages move away
    assert store.current_records(mbid) == {}


async def test_record_cache_is_bounded(store: Store) -> None:
    mbid = await fill(store, 12)
    sent = store.get_mailbox(A, "Sent").id
    blob = corpus()[1]
    for _ in range(4):
        await store.append(A, "Sent", blob, analyze(blob).to_bytes(), internal_date=1)
    cache = RecordCache(store._read, store._dbs, store.changes_since, max_records=30)
    assert len(cache.current(mbid)) == 12
    assert len(cache.current(sent)) == 4
    assert cache._size == 16
    small = RecordCache(store._read, store._dbs, store.changes_since, max_records=20)
    assert len(small.current(mbid)) == 12  # above half the bound: served, not kept
    assert small._size == 0 and not small._entries
    tiny = RecordCache(store._read, store._dbs, store.changes_since, max_records=9)
    tiny.current(sent)
    await store.append(A, "Sent", blob, analyze(blob).to_bytes(), internal_date=2)
    await store.append(A, "Sent", blob, analyze(blob).to_bytes(), internal_date=3)
    assert len(tiny.current(sent)) == 6 and tiny._size == 6
    other_box = store.get_mailbox(A, "Drafts").id
    for _ in range(4):
        await store.append(A, "Drafts", blob, analyze(blob).to_bytes(), internal_date=1)
    tiny.current(other_box)  # 6 + 4 > 9: the least recently used mailbox goes
    assert list(tiny._entries) == [other_box] and tiny._size == 4
