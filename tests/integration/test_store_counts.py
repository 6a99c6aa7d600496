"""The per-mailbox flag counters (``keys.counts_key``) that STATUS reads
instead of walking the messages: after any sequence of APPEND, STORE,
EXPUNGE, COPY, MOVE, \\Recent claims and DELETE they equal what a walk
counts (RFC 3501 §6.3.10 STATUS MESSAGES/UNSEEN/RECENT, RFC 9208 §4.4
DELETED/DELETED-STORAGE), on a real store; and a store written before the
counters existed is counted by a walk until its next write stores them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.stores import open_store

from mailserver.store import keys, reader
from mailserver.store.store import Store

A = "alice@example.org"
FLAGS = ["\\Seen", "\\Deleted", "\\Flagged", "kw"]


def walked(store: Store, mailbox_id: int, boundary: int) -> reader.MailboxCounts:
    recs = store.list_messages(mailbox_id)
    unseen = sum(1 for r in recs if "\\Seen" not in r.flags)
    deleted = [r for r in recs if "\\Deleted" in r.flags]
    return reader.MailboxCounts(len(recs), unseen, len(deleted), sum(r.size for r in deleted),
                                sum(1 for r in recs if r.uid > boundary))


async def check_all(store: Store, boundaries: dict[int, int]) -> None:
    for name in ("INBOX", "Trash"):
        mb = store.get_mailbox(A, name)
        assert store.mailbox_counts(mb.id) == walked(store, mb.id, boundaries.get(mb.id, 0))
    report = store.check(lambda raw: raw)
    assert report.ok, report.findings


op = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(["INBOX", "Trash"]),
              st.frozensets(st.sampled_from(FLAGS), max_size=3), st.integers(1, 200)),
    st.tuples(st.just("store"), st.sampled_from(["set", "add", "remove"]),
              st.frozensets(st.sampled_from(FLAGS), max_size=3), st.integers(0, 7)),
    st.tuples(st.just("expunge"), st.booleans()),
    st.tuples(st.just("copy"), st.booleans(), st.integers(0, 7)),
    st.tuples(st.just("claim"), st.integers(0, 12)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(op, min_size=1, max_size=14))
async def test_counters_follow_every_write(ops: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with open_store(Path(tmp), A) as store:
            boundaries: dict[int, int] = {}
            for o in ops:
                inbox = store.get_mailbox(A, "INBOX")
                uids = [r.uid for r in store.list_messages(inbox.id)]
                if o[0] == "append":
                    await store.append(A, o[1], b"Subject: x\r\n\r\n" + b"y" * o[3], b"",
                                       flags=o[2], internal_date=1)
                elif o[0] == "store" and uids:
                    await store.store_flags(inbox.id, uids[o[3] % len(uids):], o[1], o[2])
                elif o[0] == "expunge":
                    await store.expunge(inbox.id, uids[:2] if o[1] else None)
                elif o[0] == "copy" and uids:
                    some = uids[o[2] % len(uids):]
                    if o[1]:
                        await store.move(inbox.id, some, A, "Trash")
                    else:
                        await store.copy(inbox.id, some, A, "Trash")
                elif o[0] == "claim":
                    await store.claim_recent(inbox.id, o[1])
                    boundaries[inbox.id] = max(boundaries.get(inbox.id, 0), o[1])
                await check_all(store, boundaries)


async def test_store_without_counters_is_walked_then_kept(tmp_path: Path) -> None:
    async with open_store(tmp_path, A) as store:
        mb = store.get_mailbox(A, "INBOX")
        for n in range(4):
            await store.append(A, "INBOX", b"Subject: %d\r\n\r\nbody\r\n" % n, b"",
                               flags=frozenset({"\\Seen"} if n % 2 else {"\\Deleted"}),
                               internal_date=1)
        expected = walked(store, mb.id, 0)
        # A store from before the counters existed has no counts key.
        with store._env.begin(write=True) as txn:
            assert txn.delete(keys.counts_key(mb.id), db=store._dbs.meta)
        assert store.mailbox_counts(mb.id) == expected
        await store.store_flags(mb.id, [1], "add", frozenset({"\\Seen"}))
        with store._env.begin() as txn:
            assert reader.stored_counts(txn, store._dbs, mb.id) == (1, 2, expected.deleted_size)
        assert store.mailbox_counts(mb.id) == walked(store, mb.id, 0)
        # DELETE retires the id and its counters with it.
        await store.append(A, "Trash", b"Subject: t\r\n\r\n", b"", internal_date=1)
        trash = store.get_mailbox(A, "Trash")
        await store.delete_mailbox(A, "Trash")
        with store._env.begin() as txn:
            assert reader.stored_counts(txn, store._dbs, trash.id) is None
