"""Domains, accounts, aliases, recipient resolution and quota on a real LMDB store."""

from __future__ import annotations

import pytest

from mailserver.errors import (
    AccountNotFound,
    AlreadyExists,
    Cannot,
    DomainNotFound,
    InvalidName,
    NotFound,
    QuotaExceeded,
)
from mailserver.store.model import DEFAULT_MAILBOXES, NewMessage
from mailserver.store.store import Store


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path)
    await s.add_domain("Example.ORG")
    await s.add_account("Alice@Example.org", "hash-a")
    yield s
    await s.close()


async def test_domains(store: Store) -> None:
    assert [d.name for d in store.list_domains()] == ["example.org"]
    assert store.is_local_domain("EXAMPLE.org")
    assert not store.is_local_domain("example.net")
    assert not store.is_local_domain("")
    with pytest.raises(AlreadyExists):
        await store.add_domain("example.org")
    with pytest.raises(InvalidName):
        await store.add_domain("bad domain")
    await store.add_domain("example.net")
    await store.delete_domain("example.net")
    assert not store.is_local_domain("example.net")
    with pytest.raises(DomainNotFound):
        await store.delete_domain("example.net")
    with pytest.raises(Cannot):
        await store.delete_domain("example.org")  # alice is still there


async def test_account_needs_domain_and_is_unique(store: Store) -> None:
    with pytest.raises(DomainNotFound):
        await store.add_account("bob@nowhere.test", "h")
    with pytest.raises(AlreadyExists):
        await store.add_account("ALICE@example.org", "h")
    with pytest.raises(InvalidName):
        await store.add_account("no-at-sign", "h")
    acc = store.get_account("aLiCe@EXAMPLE.ORG")
    assert acc is not None
    assert (acc.address, acc.password_hash, acc.quota, acc.used) == (
        "alice@example.org",
        "hash-a",
        0,
        0,
    )
    assert store.get_account("nobody@example.org") is None
    assert store.get_account("garbage") is None


async def test_default_mailboxes(store: Store) -> None:
    boxes = {m.name: m for m in store.list_mailboxes("alice@example.org")}
    assert set(boxes) == {name for name, _ in DEFAULT_MAILBOXES}
    for name, special in DEFAULT_MAILBOXES:
        mb = boxes[name]
        assert mb.special_use == special
        assert mb.subscribed and not mb.noselect
        assert (mb.messages, mb.size, mb.uidnext) == (0, 0, 1)
    assert len({m.uidvalidity for m in boxes.values()}) == len(boxes)
    assert len({m.id for m in boxes.values()}) == len(boxes)
    assert store.get_mailbox("alice@example.org", "inbox").name == "INBOX"


async def test_password_and_quota_updates(store: Store) -> None:
    await store.set_password_hash("alice@example.org", "hash-b")
    await store.set_quota("ALICE@example.org", 1234)
    acc = store.get_account("alice@example.org")
    assert acc is not None and (acc.password_hash, acc.quota) == ("hash-b", 1234)
    with pytest.raises(AccountNotFound):
        await store.set_quota("nobody@example.org", 1)
    with pytest.raises(AccountNotFound):
        await store.set_password_hash("nobody@example.org", "x")


async def test_list_accounts_by_domain(store: Store) -> None:
    await store.add_domain("example.net")
    await store.add_account("bob@example.net", "h")
    await store.add_account("carol@example.org", "h")
    assert [a.address for a in store.list_accounts()] == [
        "alice@example.org",
        "bob@example.net",
        "carol@example.org",
    ]
    assert [a.address for a in store.list_accounts("example.org")] == [
        "alice@example.org",
        "carol@example.org",
    ]


async def test_aliases_and_resolve_recipient(store: Store) -> None:
    await store.add_account("bob@example.org", "h")
    await store.add_alias("Postmaster@example.org", "alice@example.org")
    await store.add_alias("sales@example.org", "BOB@example.org")
    with pytest.raises(AlreadyExists):
        await store.add_alias("sales@example.org", "alice@example.org")
    with pytest.raises(AlreadyExists):
        await store.add_alias("bob@example.org", "alice@example.org")
    with pytest.raises(AccountNotFound):
        await store.add_alias("x@example.org", "ghost@example.org")
    with pytest.raises(DomainNotFound):
        await store.add_alias("x@other.test", "alice@example.org")

    r = store.recipient_account
    assert r("alice@example.org") == "alice@example.org"
    assert r("ALICE@Example.Org") == "alice@example.org"
    assert r("postmaster@EXAMPLE.org") == "alice@example.org"
    assert r("alice+lists@example.org") == "alice@example.org"
    assert r("sales+2024@example.org") == "bob@example.org"
    assert r("nobody@example.org") is None
    assert r("alice@other.test") is None
    assert r("not an address") is None

    await store.add_alias("@example.org", "bob@example.org")  # catch-all
    assert r("nobody@example.org") == "bob@example.org"
    assert r("alice@example.org") == "alice@example.org"  # exact beats catch-all
    assert r("postmaster@example.org") == "alice@example.org"  # alias beats catch-all

    assert {(a.address, a.target) for a in store.list_aliases("example.org")} == {
        ("postmaster@example.org", "alice@example.org"),
        ("sales@example.org", "bob@example.org"),
        ("@example.org", "bob@example.org"),
    }
    await store.delete_alias("@EXAMPLE.org")
    assert r("nobody@example.org") is None
    with pytest.raises(NotFound):
        await store.delete_alias("@example.org")


async def test_plus_tag_exact_account_wins(store: Store) -> None:
    await store.add_account("alice+work@example.org", "h")
    assert store.recipient_account("alice+work@example.org") == "alice+work@example.org"
    assert store.recipient_account("alice+home@example.org") == "alice@example.org"


async def test_delete_account_removes_everything(store: Store) -> None:
    await store.add_account("bob@example.org", "h")
    await store.add_alias("b@example.org", "bob@example.org")
    (rec,) = await store.deliver(
        [NewMessage("bob@example.org", "INBOX")], b"Subject: x\r\n\r\nx\r\n", b"", internal_date=1
    )
    await store.create_mailbox("bob@example.org", "Gone")
    await store.set_subscribed("bob@example.org", "Gone", True)
    await store.delete_mailbox("bob@example.org", "Gone")
    assert store.gone_subscriptions("bob@example.org") == ["Gone"]
    await store.delete_account("bob@example.org")
    assert store.gone_subscriptions("bob@example.org") == []
    assert store.get_account("bob@example.org") is None
    assert store.list_mailboxes("bob@example.org") == []
    assert store.recipient_account("b@example.org") is None
    assert store.list_aliases() == []
    assert store.blob_refcount(rec.blob_id) == 0
    assert store.list_messages(rec.mailbox_id) == []
    with pytest.raises(NotFound):
        store.get_blob(rec.blob_id)
    with pytest.raises(AccountNotFound):
        await store.delete_account("bob@example.org")


async def test_quota(store: Store) -> None:
    await store.set_quota("alice@example.org", 100)
    blob = b"Subject: q\r\n\r\n" + b"x" * 36  # 50 octets
    inbox = NewMessage("alice@example.org", "INBOX")
    await store.deliver([inbox], blob, b"", internal_date=1)
    await store.deliver([inbox], blob, b"", internal_date=1)
    assert store.get_account("alice@example.org").used == 100
    with pytest.raises(QuotaExceeded):
        await store.deliver([inbox], blob + b"y", b"", internal_date=1)
    with pytest.raises(QuotaExceeded):
        await store.append("alice@example.org", "Sent", b"z", b"", internal_date=1)
    mb = store.get_mailbox("alice@example.org", "INBOX")
    assert (mb.messages, mb.size, mb.uidnext) == (2, 100, 3)  # nothing of the failures stuck
    with pytest.raises(QuotaExceeded):
        await store.copy(mb.id, [1], "alice@example.org", "Trash")
    # MOVE inside the account does not grow usage, so it is allowed at the limit.
    _, pairs = await store.move(mb.id, [1], "alice@example.org", "Trash")
    assert pairs == [(1, 1)]
    assert store.get_account("alice@example.org").used == 100
    await store.store_flags(mb.id, [2], "add", frozenset({"\\Deleted"}))
    assert await store.expunge(mb.id) == [2]
    assert store.get_account("alice@example.org").used == 50
    await store.set_quota("alice@example.org", 0)  # unlimited
    await store.deliver([inbox] * 3, blob, b"", internal_date=1)
    assert store.get_account("alice@example.org").used == 200


async def test_failed_request_in_group_does_not_affect_others(store: Store) -> None:
    import asyncio

    await store.set_quota("alice@example.org", 10)
    await store.add_account("bob@example.org", "h")
    ok = store.deliver([NewMessage("bob@example.org", "INBOX")], b"b" * 20, b"", internal_date=1)
    bad = store.deliver([NewMessage("alice@example.org", "INBOX")], b"a" * 20, b"", internal_date=1)
    missing = store.deliver(
        [NewMessage("bob@example.org", "Nope")], b"c" * 20, b"", internal_date=1
    )
    results = await asyncio.gather(ok, bad, missing, return_exceptions=True)
    assert isinstance(results[0], list) and results[0][0].uid == 1
    assert isinstance(results[1], QuotaExceeded)
    from mailserver.errors import MailboxNotFound

    assert isinstance(results[2], MailboxNotFound)
    assert store.get_mailbox("bob@example.org", "INBOX").messages == 1
    assert store.get_mailbox("alice@example.org", "INBOX").messages == 0
    assert store.get_account("alice@example.org").used == 0
