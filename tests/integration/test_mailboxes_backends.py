"""One set of tests, two backends (issue #17 §3): mailboxes (``store.api.Mailboxes``:
CREATE, DELETE, RENAME, subscriptions, RFC 3501 §6.3.3-§6.3.7) on LMDB and on
PostgreSQL (a throwaway cluster), held to the same answers and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.postgres import new_database, writer_and_pool

from mailserver.errors import AccountNotFound, AlreadyExists, Cannot, MailboxNotFound
from mailserver.store.api import (
    LmdbDirectory,
    LmdbMailboxes,
    LmdbMessages,
    Mailboxes,
    Messages,
)
from mailserver.store.model import DEFAULT_MAILBOXES, NewMessage
from mailserver.store.pg.directory import PgDirectory
from mailserver.store.pg.mailboxes import PgMailboxes
from mailserver.store.pg.messages import PgMessages
from mailserver.store.store import Store

ALICE = "alice@example.test"
DATE = 1764900000


@dataclass
class Parts:
    mailboxes: Mailboxes
    messages: Messages


@pytest.fixture(params=["lmdb", "postgresql"])
async def parts(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Parts]:
    if request.param == "lmdb":
        store = await Store.open(tmp_path / "store")
        try:
            directory = LmdbDirectory(store)
            await directory.add_domain("example.test")
            await directory.add_account(ALICE, "x")
            yield Parts(LmdbMailboxes(store), LmdbMessages(store))
        finally:
            await store.close()
        return
    async with new_database(request.getfixturevalue("cluster")) as dsn, \
            writer_and_pool(dsn, connections=2) as (writer, pool):
        directory = PgDirectory(writer, pool)
        await directory.add_domain("example.test")
        await directory.add_account(ALICE, "x")
        yield Parts(PgMailboxes(writer, pool), PgMessages(writer, pool))


async def _names(m: Mailboxes) -> list[str]:
    return [b.name for b in await m.list_mailboxes(ALICE)]


async def _append(p: Parts, mailbox: str, n: int) -> None:
    for i in range(n):
        await p.messages.append(ALICE, mailbox, b"Subject: %d\r\n\r\nx\r\n" % i, b"",
                                internal_date=DATE)


async def test_create_makes_parents_and_refuses_twice(parts: Parts) -> None:
    m = parts.mailboxes
    assert await _names(m) == sorted(name for name, _ in DEFAULT_MAILBOXES)
    made = await m.create_mailbox(ALICE, "Work/2026/Q4")
    assert made.name == "Work/2026/Q4" and made.uidnext == 1 and not made.noselect
    assert {"Work", "Work/2026", "Work/2026/Q4"} <= set(await _names(m))
    parent = await m.get_mailbox(ALICE, "Work")
    assert not parent.subscribed and not parent.noselect  # made as a level, unsubscribed
    assert (await m.get_mailbox_by_id(made.id)).name == "Work/2026/Q4"
    assert (await m.get_mailbox(ALICE, "inbox")).name == "INBOX"
    with pytest.raises(AlreadyExists):
        await m.create_mailbox(ALICE, "Work/2026/Q4")
    with pytest.raises(AccountNotFound):
        await m.create_mailbox("nobody@example.test", "X")
    with pytest.raises(MailboxNotFound):
        await m.get_mailbox(ALICE, "Nowhere")
    with pytest.raises(MailboxNotFound):
        await m.get_mailbox_by_id(10**9)
    assert await m.list_mailboxes("nobody@example.test") == []


async def test_delete_leaf_and_level(parts: Parts) -> None:
    m = parts.mailboxes
    with pytest.raises(Cannot):
        await m.delete_mailbox(ALICE, "INBOX")
    with pytest.raises(MailboxNotFound):
        await m.delete_mailbox(ALICE, "Nowhere")
    first = await m.create_mailbox(ALICE, "Lists/python")
    await _append(parts, "Lists", 3)
    # A mailbox with inferiors: its messages go, it stays as a noselect level.
    await m.delete_mailbox(ALICE, "Lists")
    level = await m.get_mailbox(ALICE, "Lists")
    assert level.noselect and level.messages == 0 and level.size == 0
    assert level.highestmodseq > 1  # the removals were logged at a new MODSEQ
    with pytest.raises(Cannot):
        await m.delete_mailbox(ALICE, "Lists")  # a level with inferiors
    for put in (parts.messages.append(ALICE, "Lists", b"x\r\n", b"", internal_date=DATE),
                parts.messages.deliver([NewMessage(ALICE, "Lists")], b"x\r\n", b"",
                                       internal_date=DATE)):
        with pytest.raises(MailboxNotFound):  # a level holds no messages (§6.3.4)
            await put
    # CREATE over the level: a fresh mailbox, a UIDVALIDITY above every earlier one.
    again = await m.create_mailbox(ALICE, "Lists")
    assert not again.noselect and again.id != level.id
    assert again.uidvalidity > max(level.uidvalidity, first.uidvalidity)
    # A leaf goes; its subscription outlives it; CREATE subscribes the name again.
    await m.set_subscribed(ALICE, "Lists/python", True)
    await m.delete_mailbox(ALICE, "Lists/python")
    assert "Lists/python" not in await _names(m)
    assert await m.gone_subscriptions(ALICE) == ["Lists/python"]
    reborn = await m.create_mailbox(ALICE, "Lists/python")
    assert reborn.subscribed and reborn.uidvalidity > again.uidvalidity
    assert await m.gone_subscriptions(ALICE) == []


async def test_rename_moves_inferiors_and_inbox_messages(parts: Parts) -> None:
    m = parts.mailboxes
    await m.create_mailbox(ALICE, "A/B")
    a = await m.get_mailbox(ALICE, "A")
    await _append(parts, "A", 2)
    await m.rename_mailbox(ALICE, "A", "X/Y")
    names = await _names(m)
    assert "A" not in names and "A/B" not in names
    assert {"X", "X/Y", "X/Y/B"} <= set(names)
    moved = await m.get_mailbox(ALICE, "X/Y")
    assert moved.id == a.id and moved.uidvalidity == a.uidvalidity and moved.messages == 2
    with pytest.raises(Cannot):
        await m.rename_mailbox(ALICE, "X", "X/Y/Z")  # into its own hierarchy
    with pytest.raises(AlreadyExists):
        await m.rename_mailbox(ALICE, "X/Y", "Sent")
    with pytest.raises(MailboxNotFound):
        await m.rename_mailbox(ALICE, "Nowhere", "Elsewhere")
    # INBOX: its messages move with their UIDs; INBOX stays, empty, same UIDVALIDITY.
    await _append(parts, "INBOX", 3)
    inbox = await m.get_mailbox(ALICE, "INBOX")
    await m.rename_mailbox(ALICE, "INBOX", "Old/Inbox")
    after = await m.get_mailbox(ALICE, "INBOX")
    assert after.id == inbox.id and after.uidvalidity == inbox.uidvalidity
    assert after.messages == 0 and after.highestmodseq > inbox.highestmodseq
    old = await m.get_mailbox(ALICE, "Old/Inbox")
    assert old.messages == 3 and old.uidnext == inbox.uidnext
    assert [r.uid for r in await parts.messages.list_messages(old.id)] == [1, 2, 3]
    assert await parts.messages.list_messages(after.id) == []


async def test_subscriptions(parts: Parts) -> None:
    m = parts.mailboxes
    await m.set_subscribed(ALICE, "Sent", False)
    assert not (await m.get_mailbox(ALICE, "Sent")).subscribed
    with pytest.raises(MailboxNotFound):  # names are case-sensitive, but INBOX
        await m.set_subscribed(ALICE, "sent", True)
    await m.set_subscribed(ALICE, "inbox", False)
    assert not (await m.get_mailbox(ALICE, "INBOX")).subscribed
    with pytest.raises(MailboxNotFound):
        await m.set_subscribed(ALICE, "Nowhere", True)
    with pytest.raises(MailboxNotFound):
        await m.set_subscribed(ALICE, "Nowhere", False)
    with pytest.raises(AccountNotFound):
        await m.set_subscribed("nobody@example.test", "INBOX", True)
    await m.delete_mailbox(ALICE, "Drafts")  # subscribed (a default mailbox)
    assert await m.gone_subscriptions(ALICE) == ["Drafts"]
    await m.set_subscribed(ALICE, "Drafts", False)  # UNSUBSCRIBE of a gone one
    assert await m.gone_subscriptions(ALICE) == []


async def test_status_counts(parts: Parts) -> None:
    """What STATUS counts (RFC 3501 §6.3.10, RFC 9208 §4.4) on both backends."""
    m = parts.mailboxes
    inbox = await m.get_mailbox(ALICE, "INBOX")
    zero = await m.mailbox_counts(10**9)
    assert (zero.messages, zero.unseen, zero.deleted, zero.deleted_size, zero.recent) == (
        0, 0, 0, 0, 0)
    await _append(parts, "INBOX", 4)
    listed = await parts.messages.list_messages(inbox.id)
    await parts.messages.store_flags(inbox.id, [1, 2], "add", frozenset({"\\Seen"}))
    await parts.messages.store_flags(inbox.id, [2, 3], "add", frozenset({"\\Deleted"}))
    await parts.messages.claim_recent(inbox.id, 1)  # UID 1 was seen by a SELECT
    counts = await m.mailbox_counts(inbox.id)
    assert (counts.messages, counts.unseen, counts.deleted, counts.recent) == (4, 2, 2, 3)
    assert counts.deleted_size == listed[1].size + listed[2].size
