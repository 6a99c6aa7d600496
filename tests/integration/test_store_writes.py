"""Write requests that lean on the per-process record cache: EXPUNGE's
candidates from the cache (checked against every change since), and STORE /
EXPUNGE advancing the cache with their own result (``WriteSpan``).  The cache
must always equal a fresh read of the store (RFC 3501 §6.4.3, RFC 7162)."""

from __future__ import annotations

import pytest
from support.stores import open_store

from mailserver.store import messages
from mailserver.store.store import Store

A = "alice@example.org"
MSG = b"From: x@example.net\r\nSubject: hello\r\n\r\nbody\r\n"


@pytest.fixture
async def store(tmp_path):
    async with open_store(tmp_path, A) as s:
        yield s


async def _inbox_with(store: Store, n: int) -> int:
    for i in range(n):
        await store.append(A, "INBOX", MSG + b"%d" % i, b"", internal_date=1)
    return store.get_mailbox(A, "INBOX").id


def _same_as_store(store: Store, mbid: int) -> None:
    cached = store.current_records(mbid)
    assert list(cached.values()) == store.list_messages(mbid)


async def _unseen_by_cache(store: Store, mbid: int, uids: list[int], mode: str) -> None:
    """A flag change the cache does not hear of (as if made by another process)."""
    await store._writer.submit(  # noqa: SLF001 - the real request, without the cache's advance
        messages.store_flags, mbid, uids, mode, frozenset({"\\Deleted"}), None)


async def test_expunge_uses_cache_and_changes_since(store: Store) -> None:
    mbid = await _inbox_with(store, 20)
    await store.store_flags(mbid, [2, 4, 6], "add", frozenset({"\\Deleted"}))
    _same_as_store(store, mbid)  # cache current, with 2, 4, 6 deleted
    await _unseen_by_cache(store, mbid, [8, 9], "add")  # deleted behind the cache's back
    await _unseen_by_cache(store, mbid, [4], "remove")  # and one undeleted
    assert await store.expunge(mbid) == [2, 6, 8, 9]
    _same_as_store(store, mbid)
    assert [r.uid for r in store.list_messages(mbid)] == [
        u for u in range(1, 21) if u not in (2, 6, 8, 9)]


async def test_expunge_without_cache_walks(store: Store) -> None:
    mbid = await _inbox_with(store, 5)
    await _unseen_by_cache(store, mbid, [1, 5], "add")  # the cache never read this mailbox
    assert await store.expunge(mbid) == [1, 5]
    _same_as_store(store, mbid)


async def test_store_and_expunge_advance_the_cache(store: Store) -> None:
    mbid = await _inbox_with(store, 10)
    _same_as_store(store, mbid)
    updated, failed, span = await store.store_flags(
        mbid, [1, 2, 3], "add", frozenset({"\\Flagged", "\\Deleted"}))
    assert failed == [] and [r.uid for r in updated] == [1, 2, 3]
    assert span.after == span.before + 3 == store.get_mailbox_by_id(mbid).highestmodseq
    _same_as_store(store, mbid)
    await store.store_flags(mbid, [1], "remove", frozenset({"\\Deleted"}))
    assert await store.expunge(mbid) == [2, 3]
    _same_as_store(store, mbid)
    assert await store.expunge(mbid, [1]) == []  # not \Deleted
    _same_as_store(store, mbid)


async def test_store_span_when_nothing_changes(store: Store) -> None:
    mbid = await _inbox_with(store, 3)
    await store.store_flags(mbid, [1], "add", frozenset({"\\Seen"}))
    updated, _, span = await store.store_flags(mbid, [1], "add", frozenset({"\\Seen"}))
    assert updated == [] and span.before == span.after
    _same_as_store(store, mbid)
