"""CREATE/DELETE/RENAME/SUBSCRIBE semantics (RFC 3501 §6.3.3-§6.3.7) on a real store."""

from __future__ import annotations

import pytest
from support.stores import open_store

from mailserver.errors import AccountNotFound, AlreadyExists, Cannot, InvalidName, MailboxNotFound
from mailserver.store.model import NewMessage
from mailserver.store.store import Store

A = "alice@example.org"


@pytest.fixture
async def store(tmp_path):
    async with open_store(tmp_path, A) as s:
        yield s


def names(store: Store) -> list[str]:
    return [m.name for m in store.list_mailboxes(A)]


async def put(store: Store, mailbox: str, body: bytes = b"Subject: t\r\n\r\nt\r\n") -> int:
    (rec,) = await store.deliver([NewMessage(A, mailbox)], body, b"f", internal_date=1)
    return rec.uid


@pytest.mark.parametrize(
    "bad",
    ["", "/", "a/", "/a", "a//b", "a\x00b", "a\rb", "a\nb", "x" * 251, "é" * 126],
)
async def test_invalid_names(store: Store, bad: str) -> None:
    with pytest.raises(InvalidName):
        await store.create_mailbox(A, bad)


async def test_create_with_parents_and_unique_uidvalidity(store: Store) -> None:
    mb = await store.create_mailbox(A, "Work/2024/Q1", special_use="\\Archive")
    assert mb.name == "Work/2024/Q1" and mb.special_use == "\\Archive"
    assert {"Work", "Work/2024", "Work/2024/Q1"} <= set(names(store))
    assert names(store) == sorted(names(store))
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(A, "Work")
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(A, "inbox")
    with pytest.raises(AccountNotFound):
        await store.create_mailbox("ghost@example.org", "x")
    all_v = [m.uidvalidity for m in store.list_mailboxes(A)]
    assert len(set(all_v)) == len(all_v)
    # Unicode names are kept as given.
    uni = await store.create_mailbox(A, "Entwürfe/日本")
    assert store.get_mailbox(A, "Entwürfe/日本").id == uni.id


async def test_delete_and_recreate_gets_new_uidvalidity(store: Store) -> None:
    mb = await store.create_mailbox(A, "Tmp")
    await put(store, "Tmp")
    await store.delete_mailbox(A, "Tmp")
    with pytest.raises(MailboxNotFound):
        store.get_mailbox(A, "Tmp")
    with pytest.raises(MailboxNotFound):
        store.changes_since(mb.id, 0)
    again = await store.create_mailbox(A, "Tmp")
    assert again.uidvalidity > mb.uidvalidity and again.id != mb.id
    assert again.uidnext == 1 and again.messages == 0
    with pytest.raises(MailboxNotFound):
        await store.delete_mailbox(A, "Nope")
    with pytest.raises(Cannot):
        await store.delete_mailbox(A, "INBOX")
    with pytest.raises(Cannot):
        await store.delete_mailbox(A, "Inbox")


async def test_delete_with_children_becomes_noselect(store: Store) -> None:
    await store.create_mailbox(A, "P/C")
    uid = await put(store, "P")
    parent = store.get_mailbox(A, "P")
    blob_id = store.get_messages(parent.id, [uid])[0].blob_id
    await store.delete_mailbox(A, "P")
    p = store.get_mailbox(A, "P")
    assert p.noselect and p.messages == 0 and p.size == 0
    assert "P" in names(store)  # LIST shows it as \Noselect
    assert store.list_messages(p.id) == []
    assert store.blob_refcount(blob_id) == 0
    assert store.changes_since(p.id, parent.highestmodseq).expunged == (uid,)
    assert store.get_account(A).used == 0
    with pytest.raises(MailboxNotFound):  # no delivery into a hierarchy-only level
        await put(store, "P")
    with pytest.raises(Cannot):
        await store.delete_mailbox(A, "P")  # noselect with children
    await store.delete_mailbox(A, "P/C")
    await store.delete_mailbox(A, "P")  # noselect without children: goes
    assert "P" not in names(store)


async def test_create_over_noselect_revives_with_new_uidvalidity(store: Store) -> None:
    await store.create_mailbox(A, "P/C")
    old = store.get_mailbox(A, "P")
    await store.delete_mailbox(A, "P")
    new = await store.create_mailbox(A, "P")
    assert not new.noselect and new.uidvalidity > old.uidvalidity and new.id != old.id
    assert store.get_mailbox(A, "P/C").name == "P/C"


async def test_rename_moves_children_keeps_ids(store: Store) -> None:
    await store.create_mailbox(A, "a/b/c")
    await store.create_mailbox(A, "ab")  # not a child of "a" despite the prefix
    before = {m.name: m for m in store.list_mailboxes(A)}
    uid = await put(store, "a/b")
    await store.rename_mailbox(A, "a", "x/y")
    after = {m.name: m for m in store.list_mailboxes(A)}
    assert {"x", "x/y", "x/y/b", "x/y/b/c", "ab"} <= set(after)
    assert not {"a", "a/b", "a/b/c"} & set(after)
    assert after["x/y/b"].id == before["a/b"].id
    assert after["x/y/b"].uidvalidity == before["a/b"].uidvalidity
    assert store.get_messages(after["x/y/b"].id, [uid])[0].uid == uid
    assert after["ab"].id == before["ab"].id
    with pytest.raises(MailboxNotFound):
        await store.rename_mailbox(A, "a", "z")
    with pytest.raises(AlreadyExists):
        await store.rename_mailbox(A, "ab", "Sent")
    with pytest.raises(Cannot):
        await store.rename_mailbox(A, "ab", "ab/sub")
    with pytest.raises(InvalidName):
        await store.rename_mailbox(A, "ab", "ab/")


async def test_rename_inbox_moves_messages(store: Store) -> None:
    await store.create_mailbox(A, "INBOX/keep")
    inbox = store.get_mailbox(A, "INBOX")
    u1 = await put(store, "INBOX", b"Subject: 1\r\n\r\n1\r\n")
    u2 = await put(store, "INBOX", b"Subject: 2\r\n\r\n2\r\n")
    await store.store_flags(inbox.id, [u2], "add", frozenset({"\\Flagged"}))
    await store.rename_mailbox(A, "inbox", "Old")
    new_inbox = store.get_mailbox(A, "INBOX")
    assert new_inbox.id == inbox.id and new_inbox.uidvalidity == inbox.uidvalidity
    assert new_inbox.messages == 0 and store.list_messages(inbox.id) == []
    assert new_inbox.uidnext == inbox.uidnext + 2  # UIDs are not reused
    assert store.changes_since(inbox.id, 0).expunged == (u1, u2)
    old = store.get_mailbox(A, "Old")
    moved = store.list_messages(old.id)
    assert [m.uid for m in moved] == [u1, u2]
    assert moved[1].flags == frozenset({"\\Flagged"})
    assert store.blob_refcount(moved[0].blob_id) == 1
    assert store.get_mailbox(A, "INBOX/keep").name == "INBOX/keep"  # children stay
    assert store.get_account(A).used == old.size
    # New mail still goes to INBOX.
    u3 = await put(store, "INBOX")
    assert u3 == inbox.uidnext + 2


async def test_subscribe(store: Store) -> None:
    mb = await store.create_mailbox(A, "News")
    assert not mb.subscribed
    await store.set_subscribed(A, "News", True)
    assert store.get_mailbox(A, "News").subscribed
    await store.set_subscribed(A, "News", False)
    assert not store.get_mailbox(A, "News").subscribed
    with pytest.raises(MailboxNotFound):
        await store.set_subscribed(A, "Nope", True)
