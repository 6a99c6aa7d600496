"""One set of tests, two backends (issue #17 §3): mailboxes' messages
(``store.api.Messages``: APPEND, STORE, EXPUNGE, UIDs and MODSEQs) on LMDB
and on PostgreSQL (a throwaway cluster), held to the same answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.postgres import new_database, writer_and_pool

from mailserver.errors import MailboxNotFound, NotFound, QuotaExceeded
from mailserver.store.api import LmdbDirectory, LmdbMessages, Messages
from mailserver.store.model import NewMessage
from mailserver.store.pg.changes import ChangeListener, MailboxWaiters
from mailserver.store.pg.directory import PgDirectory
from mailserver.store.pg.messages import PgMessages
from mailserver.store.store import Store

ALICE = "alice@example.test"
BOB = "bob@example.test"
QUOTA = 200  # octets: bob's quota
DATE = 1764900000


@pytest.fixture(params=["lmdb", "postgresql"])
async def messages(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Messages]:
    if request.param == "lmdb":
        store = await Store.open(tmp_path / "store")
        try:
            directory = LmdbDirectory(store)
            await directory.add_domain("example.test")
            await directory.add_account(ALICE, "x")
            await directory.add_account(BOB, "x", quota=QUOTA)
            yield LmdbMessages(store)
        finally:
            await store.close()
        return
    async with new_database(request.getfixturevalue("cluster")) as dsn, \
            writer_and_pool(dsn, connections=2) as (writer, pool):
        waiters = MailboxWaiters()
        listener = ChangeListener(dsn, waiters.notice)
        await listener.start()
        try:
            directory = PgDirectory(writer, pool)
            await directory.add_domain("example.test")
            await directory.add_account(ALICE, "x")
            await directory.add_account(BOB, "x", quota=QUOTA)
            yield PgMessages(writer, pool, waiters=waiters)
        finally:
            await listener.stop()


def _msg(i: int) -> bytes:
    return b"Subject: message %d\r\n\r\nbody %d\r\n" % (i, i)


async def test_append_gives_uids_and_modseqs(messages: Messages) -> None:
    inbox = await messages.get_mailbox(ALICE, "INBOX")
    assert (inbox.uidnext, inbox.messages) == (1, 0)
    records = [await messages.append(ALICE, "INBOX", _msg(i), b"",
                                     flags=frozenset({"\\seen", "\\Recent", "$Label"}) if i == 0
                                     else frozenset(), internal_date=DATE + i)
               for i in range(3)]
    assert [r.uid for r in records] == [1, 2, 3]
    assert [r.modseq for r in records] == sorted({r.modseq for r in records})  # rising
    assert records[0].flags == frozenset({"\\Seen", "$Label"})  # canonical, no \Recent
    after = await messages.get_mailbox(ALICE, "inbox")
    assert (after.uidnext, after.messages, after.highestmodseq) == (4, 3, records[-1].modseq)
    assert after.size == sum(len(_msg(i)) for i in range(3))
    listed = await messages.list_messages(after.id)
    assert [(r.uid, r.internal_date, r.size) for r in listed] == [
        (1, DATE, len(_msg(0))), (2, DATE + 1, len(_msg(1))), (3, DATE + 2, len(_msg(2)))]
    assert await messages.get_blob(listed[1].blob_id) == _msg(1)
    with pytest.raises(MailboxNotFound):
        await messages.append(ALICE, "Nowhere", _msg(9), b"", internal_date=DATE)
    with pytest.raises(MailboxNotFound):
        await messages.get_mailbox(ALICE, "Nowhere")


async def test_store_changes_only_what_changes(messages: Messages) -> None:
    for i in range(3):
        await messages.append(ALICE, "INBOX", _msg(i), b"", internal_date=DATE)
    inbox = await messages.get_mailbox(ALICE, "INBOX")
    before = inbox.highestmodseq
    seen = await messages.store_flags(inbox.id, [1, 2, 99], "add", frozenset({"\\SEEN"}))
    assert [r.uid for r in seen] == [1, 2] and all(r.modseq > before for r in seen)
    assert all(r.flags == frozenset({"\\Seen"}) for r in seen)
    top = (await messages.get_mailbox(ALICE, "INBOX")).highestmodseq
    assert top == max(r.modseq for r in seen)
    assert await messages.store_flags(inbox.id, [1, 2], "add", frozenset({"\\Seen"})) == []
    assert (await messages.get_mailbox(ALICE, "INBOX")).highestmodseq == top  # no change
    removed = await messages.store_flags(inbox.id, [2], "remove", frozenset({"\\Seen"}))
    assert [(r.uid, r.flags) for r in removed] == [(2, frozenset())]
    replaced = await messages.store_flags(inbox.id, [1, 3], "set",
                                          frozenset({"$Work", "\\Flagged"}))
    assert {r.uid: r.flags for r in replaced} == {1: frozenset({"$Work", "\\Flagged"}),
                                                  3: frozenset({"$Work", "\\Flagged"})}
    listed = {r.uid: r.flags for r in await messages.list_messages(inbox.id)}
    assert listed == {1: frozenset({"$Work", "\\Flagged"}), 2: frozenset(),
                      3: frozenset({"$Work", "\\Flagged"})}
    with pytest.raises(ValueError):
        await messages.store_flags(inbox.id, [1], "toggle", frozenset({"\\Seen"}))


async def test_expunge_removes_deleted_only(messages: Messages) -> None:
    for i in range(4):
        await messages.append(ALICE, "INBOX", _msg(i), b"", internal_date=DATE)
    inbox = await messages.get_mailbox(ALICE, "INBOX")
    await messages.store_flags(inbox.id, [2, 3], "add", frozenset({"\\Deleted"}))
    assert await messages.expunge(inbox.id, [1, 2]) == [2]  # 1 is not \Deleted
    top = (await messages.get_mailbox(ALICE, "INBOX")).highestmodseq
    assert await messages.expunge(inbox.id) == [3]
    after = await messages.get_mailbox(ALICE, "INBOX")
    assert after.highestmodseq > top and after.messages == 2
    assert after.size == len(_msg(0)) + len(_msg(3))
    assert [r.uid for r in await messages.list_messages(inbox.id)] == [1, 4]
    assert await messages.expunge(inbox.id) == []
    with pytest.raises(MailboxNotFound):
        await messages.expunge(10**9)
    # UIDs are never reused (RFC 3501 §2.3.1.1).
    assert (await messages.append(ALICE, "INBOX", _msg(9), b"", internal_date=DATE)).uid == 5


async def test_concurrent_appends_get_distinct_rising_uids(messages: Messages) -> None:
    async def writer(k: int) -> list[int]:
        return [(await messages.append(ALICE, "INBOX", _msg(100 * k + i), b"",
                                       internal_date=DATE)).uid for i in range(10)]

    got = await asyncio.gather(*(writer(k) for k in range(4)))
    every = [u for uids in got for u in uids]
    assert sorted(every) == list(range(1, 41))
    assert all(uids == sorted(uids) for uids in got)
    inbox = await messages.get_mailbox(ALICE, "INBOX")
    assert (inbox.uidnext, inbox.messages) == (41, 40)


async def test_deliver_stores_one_blob_for_every_target(messages: Messages) -> None:
    """SMTP delivery to several mailboxes: one commit, each copy after its own
    trace prefix, the octets stored once and readable through every record."""
    blob = _msg(7)
    targets = [NewMessage(ALICE, "INBOX", prefix=b"Delivered-To: alice@example.test\r\n"),
               NewMessage(ALICE, "Junk", flags=frozenset({"$Junk"})),
               NewMessage(BOB, "INBOX", prefix=b"X-Trace: b\r\n")]
    records = await messages.deliver(targets, blob, b"", internal_date=DATE, tz_offset=60)
    assert [r.uid for r in records] == [1, 1, 1]
    assert records[0].size == len(targets[0].prefix) + len(blob)
    assert records[1].flags == frozenset({"$Junk"}) and records[1].prefix == b""
    assert records[2].prefix == b"X-Trace: b\r\n"
    assert len({r.blob_id for r in records}) == 1
    assert await messages.get_blob(records[0].blob_id) == blob
    inbox = await messages.get_mailbox(ALICE, "INBOX")
    assert (inbox.messages, inbox.size, inbox.uidnext) == (1, records[0].size, 2)
    junk = await messages.get_mailbox(ALICE, "Junk")
    listed = await messages.list_messages(junk.id)
    assert [(r.uid, r.flags, r.internal_date, r.tz_offset) for r in listed] == [
        (1, frozenset({"$Junk"}), DATE, 60)]
    assert await messages.deliver([], blob, b"", internal_date=DATE) == []


async def test_deliver_is_all_or_nothing(messages: Messages) -> None:
    """Over quota or an unknown mailbox for one target: nothing is stored for
    any (the 250 is never half-true)."""
    big = b"Subject: big\r\n\r\n" + b"x" * QUOTA + b"\r\n"
    with pytest.raises(QuotaExceeded):
        await messages.deliver([NewMessage(ALICE, "INBOX"), NewMessage(BOB, "INBOX")], big, b"",
                               internal_date=DATE)
    with pytest.raises(MailboxNotFound):
        await messages.deliver([NewMessage(ALICE, "INBOX"), NewMessage(ALICE, "Nowhere")],
                               _msg(1), b"", internal_date=DATE)
    for account in (ALICE, BOB):
        assert (await messages.get_mailbox(account, "INBOX")).messages == 0
    (rec,) = await messages.deliver([NewMessage(BOB, "INBOX")], _msg(2), b"",
                                    internal_date=DATE)
    assert rec.uid == 1  # the refused requests used no UID that shows


async def test_copy_and_move_keep_flags_and_answer_copyuid(messages: Messages) -> None:
    """COPY and MOVE (RFC 3501 §6.4.7, RFC 6851), with UIDPLUS's pairs (RFC 4315 §3)."""
    for i in range(4):
        await messages.append(ALICE, "INBOX", _msg(i), b"facts %d" % i, internal_date=DATE + i,
                              flags=frozenset({"\\Seen"}) if i == 1 else frozenset())
    inbox = await messages.get_mailbox(ALICE, "INBOX")
    trash = await messages.get_mailbox(ALICE, "Trash")
    validity, pairs = await messages.transfer(inbox.id, [4, 2, 1, 99], ALICE, "Trash",
                                              move=False)
    assert validity == trash.uidvalidity and pairs == [(1, 1), (2, 2), (4, 3)]
    copied = {r.uid: r for r in await messages.list_messages(trash.id)}
    assert copied[2].flags == frozenset({"\\Seen"}) and copied[3].internal_date == DATE + 3
    assert await messages.get_blob(copied[3].blob_id) == _msg(3)
    assert (await messages.get_mailbox(ALICE, "INBOX")).messages == 4  # COPY leaves them
    after = await messages.get_mailbox(ALICE, "Trash")
    assert (after.messages, after.uidnext) == (3, 4)
    assert after.size == sum(len(_msg(i)) for i in (0, 1, 3))
    # MOVE: expunged from the source, the blob still readable through the copy.
    before = (await messages.get_mailbox(ALICE, "INBOX")).highestmodseq
    validity, pairs = await messages.transfer(inbox.id, [3], ALICE, "Junk", move=True)
    assert pairs == [(3, 1)]
    changes = await messages.changes_since(inbox.id, before)
    assert changes.expunged == (3,) and changes.updated == ()
    assert [r.uid for r in await messages.list_messages(inbox.id)] == [1, 2, 4]
    junk = await messages.get_mailbox(ALICE, "Junk")
    (moved,) = await messages.list_messages(junk.id)
    assert await messages.get_blob(moved.blob_id) == _msg(2)
    assert await messages.get_facts(moved.blob_id) == b"facts 2"
    assert await messages.transfer(inbox.id, [99], ALICE, "Junk", move=True) == (
        junk.uidvalidity, [])
    with pytest.raises(MailboxNotFound):
        await messages.transfer(inbox.id, [1], ALICE, "Nowhere", move=False)


async def test_copy_over_quota_copies_nothing(messages: Messages) -> None:
    bob_inbox = await messages.get_mailbox(BOB, "INBOX")
    for _ in range(2):
        await messages.append(BOB, "INBOX", b"Subject: b\r\n\r\n" + b"x" * 60, b"",
                              internal_date=DATE)
    with pytest.raises(QuotaExceeded):  # 2 x 74 octets more would pass 200
        await messages.transfer(bob_inbox.id, [1, 2], BOB, "Trash", move=False)
    assert (await messages.get_mailbox(BOB, "Trash")).messages == 0
    # MOVE within the account frees what it takes: allowed at the limit.
    _, pairs = await messages.transfer(bob_inbox.id, [1, 2], BOB, "Trash", move=True)
    assert pairs == [(1, 1), (2, 2)]


async def test_changes_since_is_what_changed_after_a_modseq(messages: Messages) -> None:
    for i in range(3):
        await messages.append(ALICE, "INBOX", _msg(i), b"", internal_date=DATE)
    inbox = await messages.get_mailbox(ALICE, "INBOX")
    mark = inbox.highestmodseq
    nothing = await messages.changes_since(inbox.id, mark)
    assert (nothing.mailbox, nothing.updated, nothing.expunged) == (inbox, (), ())
    await messages.store_flags(inbox.id, [2], "add", frozenset({"\\Deleted"}))
    await messages.append(ALICE, "INBOX", _msg(3), b"", internal_date=DATE)
    await messages.expunge(inbox.id)
    changes = await messages.changes_since(inbox.id, mark)
    assert [r.uid for r in changes.updated] == [4] and changes.expunged == (2,)
    assert changes.mailbox.highestmodseq > mark and changes.mailbox.messages == 3
    everything = await messages.changes_since(inbox.id, 0)
    assert [r.uid for r in everything.updated] == [1, 3, 4]
    with pytest.raises(MailboxNotFound):
        await messages.changes_since(10**9, 0)
    with pytest.raises(NotFound):
        await messages.get_facts(b"\0" * 32)
    with pytest.raises(NotFound):
        await messages.get_blob(b"\0" * 32)


async def test_multiappend_is_all_or_nothing(messages: Messages) -> None:
    entries = [(_msg(i), b"f%d" % i, frozenset({"\\Seen"}) if i else frozenset(), DATE + i, 60)
               for i in range(3)]
    records = await messages.append_many(ALICE, "INBOX", entries)
    assert [r.uid for r in records] == [1, 2, 3]
    assert [r.internal_date for r in records] == [DATE, DATE + 1, DATE + 2]
    assert records[1].flags == frozenset({"\\Seen"}) and records[0].tz_offset == 60
    inbox = await messages.get_mailbox(ALICE, "INBOX")
    assert (inbox.messages, inbox.uidnext) == (3, 4)
    big = [(b"Subject: b\r\n\r\n" + b"x" * 90, b"", frozenset(), DATE, 0)] * 3
    with pytest.raises(QuotaExceeded):  # the third passes bob's 200 octets: none stored
        await messages.append_many(BOB, "INBOX", big)
    assert (await messages.get_mailbox(BOB, "INBOX")).messages == 0
    with pytest.raises(MailboxNotFound):
        await messages.append_many(ALICE, "Nowhere", entries)
    # APPEND of one is held to the same quota (RFC 9208 §4.1.1: NO [OVERQUOTA]).
    await messages.append(BOB, "INBOX", big[0][0], b"", internal_date=DATE)
    with pytest.raises(QuotaExceeded):
        await messages.append(BOB, "INBOX", big[0][0] + b"x" * 40, b"", internal_date=DATE)
    assert (await messages.get_mailbox(BOB, "INBOX")).messages == 1


async def test_recent_is_claimed_once(messages: Messages) -> None:
    inbox = await messages.get_mailbox(ALICE, "INBOX")
    assert await messages.recent_boundary(inbox.id) == 0
    assert await messages.claim_recent(inbox.id, 5) == 0  # UIDs 1-5 are this session's
    assert await messages.claim_recent(inbox.id, 5) == 5  # nothing for the next one
    assert await messages.claim_recent(inbox.id, 3) == 5  # never down
    assert await messages.recent_boundary(inbox.id) == 5
    assert await messages.recent_boundary(10**9) == 0
    with pytest.raises(MailboxNotFound):
        await messages.claim_recent(10**9, 1)


async def test_wait_for_change_wakes_on_a_commit(messages: Messages) -> None:
    inbox = await messages.get_mailbox(ALICE, "INBOX")
    await messages.wait_for_change(inbox.id, inbox.highestmodseq - 1)  # already: at once
    waiter = asyncio.create_task(messages.wait_for_change(inbox.id, inbox.highestmodseq))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await messages.append(ALICE, "INBOX", _msg(1), b"", internal_date=DATE)
    async with asyncio.timeout(10):
        await waiter
    idle = asyncio.create_task(messages.wait_for_change(inbox.id, 10**6))
    await asyncio.sleep(0.05)
    idle.cancel()  # IDLE ends with DONE
    with pytest.raises(asyncio.CancelledError):
        await idle
    with pytest.raises(MailboxNotFound):
        await messages.wait_for_change(10**9, 0)
