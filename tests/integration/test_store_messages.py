"""Messages on a real store: deliver (blob stored once), APPEND of the whole
corpus byte for byte, STORE incl. UNCHANGEDSINCE, EXPUNGE, COPY, MOVE,
changes_since and MODSEQ order (RFC 3501 §6.4, RFC 7162, RFC 6851)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from support.stores import open_store

from mailserver.errors import MailboxNotFound, NotFound
from mailserver.store.model import NewMessage
from mailserver.store.store import Store

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
A = "alice@example.org"
B = "bob@example.org"
MSG = b"From: x@example.net\r\nSubject: hello\r\n\r\nbody\r\n"


@pytest.fixture
async def store(tmp_path):
    async with open_store(tmp_path, A, B) as s:
        yield s


def corpus_files() -> list[Path]:
    files = sorted((CORPUS / "messages").glob("*.eml"))
    assert len(files) >= 100, f"test corpus missing at {CORPUS}"  # fail, never skip
    return files


async def test_append_corpus_roundtrip(store: Store) -> None:
    files = corpus_files()
    inbox = store.get_mailbox(A, "INBOX")
    for n, path in enumerate(files, 1):
        data = path.read_bytes()
        rec, _ = await store.append(
            A, "INBOX", data, b"facts-" + str(n).encode(),
            flags=frozenset({"\\Seen"}) if n % 2 else frozenset(),
            internal_date=1_700_000_000 + n, tz_offset=-300,
        )
        assert rec.uid == n and rec.size == len(data) and rec.prefix == b""
        assert rec.blob_id == hashlib.sha256(data).digest()
    listed = store.list_messages(inbox.id)
    assert [m.uid for m in listed] == list(range(1, len(files) + 1))
    for rec, path in zip(listed, files, strict=True):
        data = path.read_bytes()
        assert store.get_blob(rec.blob_id) == data  # never normalised
        assert rec.internal_date == 1_700_000_000 + rec.uid and rec.tz_offset == -300
        assert rec.flags == (frozenset({"\\Seen"}) if rec.uid % 2 else frozenset())
    # Identical corpus files share one blob whose facts are the first ones stored.
    first = listed[0]
    assert store.get_facts(first.blob_id) == b"facts-1"
    mb = store.get_mailbox(A, "INBOX")
    assert mb.messages == len(files)
    assert mb.size == sum(p.stat().st_size for p in files) == store.get_account(A).used


async def test_deliver_to_many_stores_blob_once(store: Store) -> None:
    targets = [
        NewMessage(A, "INBOX", prefix=b"Delivered-To: alice@example.org\r\n"),
        NewMessage(B, "inbox", prefix=b"Delivered-To: bob@example.org\r\n"),
        NewMessage(B, "Junk", flags=frozenset({"$Junk"})),
    ]
    recs = await store.deliver(targets, MSG, b"F", internal_date=42, tz_offset=120)
    assert [r.uid for r in recs] == [1, 1, 1]
    assert len({r.blob_id for r in recs}) == 1
    blob_id = recs[0].blob_id
    assert store.blob_refcount(blob_id) == 3
    assert recs[0].size == len(targets[0].prefix) + len(MSG)
    assert recs[2].flags == frozenset({"$Junk"}) and recs[2].size == len(MSG)
    assert store.get_blob(blob_id) == MSG and store.get_facts(blob_id) == b"F"
    # The same bytes again: still one blob, more references.
    await store.deliver([NewMessage(A, "INBOX")], MSG, b"other", internal_date=43)
    assert store.blob_refcount(blob_id) == 4
    # Expunge every copy: the blob goes with the last one.
    for r in recs:
        await store.store_flags(r.mailbox_id, [r.uid], "add", frozenset({"\\Deleted"}))
        assert await store.expunge(r.mailbox_id) == [r.uid]
    assert store.blob_refcount(blob_id) == 1
    inbox = store.get_mailbox(A, "INBOX")
    await store.store_flags(inbox.id, [2], "set", frozenset({"\\Deleted"}))
    assert await store.expunge(inbox.id) == [2]
    assert store.blob_refcount(blob_id) == 0
    with pytest.raises(NotFound):
        store.get_blob(blob_id)
    with pytest.raises(NotFound):
        store.get_facts(blob_id)
    assert store.get_account(A).used == 0 and store.get_account(B).used == 0


async def test_deliver_all_or_nothing(store: Store) -> None:
    with pytest.raises(MailboxNotFound):
        await store.deliver(
            [NewMessage(A, "INBOX"), NewMessage(B, "NoSuch")], MSG, b"", internal_date=1
        )
    assert store.get_mailbox(A, "INBOX").uidnext == 1
    assert store.blob_refcount(hashlib.sha256(MSG).digest()) == 0


async def test_store_flags_modes_and_unchangedsince(store: Store) -> None:
    mb = store.get_mailbox(A, "INBOX")
    for i in range(3):
        await store.append(A, "INBOX", MSG + bytes([65 + i]), b"", internal_date=1)
    hms = store.get_mailbox(A, "INBOX").highestmodseq
    updated, failed, _ = await store.store_flags(mb.id, [1, 2, 99], "add", frozenset({"\\seen", "k1"}))
    assert [r.uid for r in updated] == [1, 2] and failed == []
    assert updated[0].flags == frozenset({"\\Seen", "k1"})
    assert [r.modseq for r in updated] == [hms + 1, hms + 2]  # each change its own MODSEQ
    # No change: not reported, no new MODSEQ.
    updated, _, _ = await store.store_flags(mb.id, [1], "add", frozenset({"\\Seen"}))
    assert updated == []
    assert store.get_mailbox(A, "INBOX").highestmodseq == hms + 2
    updated, _, _ = await store.store_flags(mb.id, [1], "remove", frozenset({"k1", "\\Recent"}))
    assert updated[0].flags == frozenset({"\\Seen"})
    updated, _, _ = await store.store_flags(mb.id, [1, 3], "set", frozenset({"\\Draft", "\\Recent"}))
    assert [r.flags for r in updated] == [frozenset({"\\Draft"})] * 2
    # UNCHANGEDSINCE (RFC 7162 §3.1.3): 2 is older than the limit, 1 and 3 newer.
    m2 = store.get_messages(mb.id, [2])[0]
    updated, failed, _ = await store.store_flags(
        mb.id, [1, 2, 3], "add", frozenset({"\\Flagged"}), unchangedsince=m2.modseq
    )
    assert [r.uid for r in updated] == [2] and failed == [1, 3]
    updated, failed, _ = await store.store_flags(
        mb.id, [1], "add", frozenset({"\\Flagged"}), unchangedsince=0
    )
    assert updated == [] and failed == [1]
    with pytest.raises(ValueError):
        await store.store_flags(mb.id, [1], "toggle", frozenset())
    with pytest.raises(MailboxNotFound):
        await store.store_flags(10**9, [1], "add", frozenset({"\\Seen"}))


async def test_expunge_subset_and_uids(store: Store) -> None:
    mb = store.get_mailbox(A, "INBOX")
    for i in range(5):
        await store.append(A, "INBOX", MSG + bytes([65 + i]), b"", internal_date=1)
    await store.store_flags(mb.id, [1, 2, 4], "add", frozenset({"\\Deleted"}))
    assert await store.expunge(mb.id, [2, 3, 4, 77]) == [2, 4]  # UID EXPUNGE (RFC 4315)
    assert [m.uid for m in store.list_messages(mb.id)] == [1, 3, 5]
    assert await store.expunge(mb.id) == [1]
    assert await store.expunge(mb.id) == []
    after = store.get_mailbox(A, "INBOX")
    assert after.messages == 2 and after.uidnext == 6
    rec, _ = await store.append(A, "INBOX", b"new", b"", internal_date=1)
    assert rec.uid == 6  # never reused


async def test_copy_and_move(store: Store) -> None:
    src = store.get_mailbox(A, "INBOX")
    for i in range(3):
        await store.append(
            A, "INBOX", MSG + bytes([65 + i]), b"",
            flags=frozenset({"\\Seen", f"k{i}"}), internal_date=100 + i, tz_offset=60,
        )
    await store.append(A, "Trash", b"occupant", b"", internal_date=1)
    uidvalidity, pairs = await store.copy(src.id, [3, 1, 50], A, "Trash")
    assert uidvalidity == store.get_mailbox(A, "Trash").uidvalidity
    assert pairs == [(1, 2), (3, 3)]
    copies = store.get_messages(store.get_mailbox(A, "Trash").id, [2, 3])
    originals = store.get_messages(src.id, [1, 3])
    for c, o in zip(copies, originals, strict=True):
        assert (c.flags, c.internal_date, c.tz_offset, c.blob_id, c.size) == (
            o.flags, o.internal_date, o.tz_offset, o.blob_id, o.size,
        )
        assert store.blob_refcount(o.blob_id) == 2
    with pytest.raises(MailboxNotFound):
        await store.copy(src.id, [1], A, "Nowhere")
    # MOVE to another account (shared blob), sources expunged in the same commit.
    hms = store.get_mailbox(A, "INBOX").highestmodseq
    _, pairs = await store.move(src.id, [1, 2], B, "INBOX")
    assert pairs == [(1, 1), (2, 2)]
    assert [m.uid for m in store.list_messages(src.id)] == [3]
    ch = store.changes_since(src.id, hms)
    assert ch.expunged == (1, 2) and ch.updated == ()
    assert store.get_account(B).used == sum(
        m.size for m in store.list_messages(store.get_mailbox(B, "INBOX").id)
    )
    assert store.get_account(A).used == store.get_mailbox(A, "INBOX").size + store.get_mailbox(
        A, "Trash"
    ).size


async def test_changes_since_and_modseq_monotonic(store: Store) -> None:
    mb = store.get_mailbox(A, "INBOX")
    seen: list[int] = [mb.highestmodseq]
    for i in range(10):
        await store.append(A, "INBOX", MSG + bytes([65 + i]), b"", internal_date=1)
        seen.append(store.get_mailbox(A, "INBOX").highestmodseq)
    base = seen[-1]
    await store.store_flags(mb.id, [3, 7], "add", frozenset({"\\Answered"}))
    seen.append(store.get_mailbox(A, "INBOX").highestmodseq)
    await store.store_flags(mb.id, [5], "add", frozenset({"\\Deleted"}))
    await store.expunge(mb.id)
    seen.append(store.get_mailbox(A, "INBOX").highestmodseq)
    new, _ = await store.append(A, "INBOX", b"late", b"", internal_date=1)
    seen.append(store.get_mailbox(A, "INBOX").highestmodseq)
    assert seen == sorted(set(seen))  # strictly increasing

    ch = store.changes_since(mb.id, base)
    assert [r.uid for r in ch.updated] == [3, 7, new.uid]
    assert ch.expunged == (5,)
    assert ch.mailbox.highestmodseq == seen[-1]
    assert all(r.modseq > base for r in ch.updated)
    # Nothing after the latest MODSEQ.
    empty = store.changes_since(mb.id, seen[-1])
    assert empty.updated == () and empty.expunged == ()
    # From 0: every live message, each once.
    full = store.changes_since(mb.id, 0)
    assert [r.uid for r in full.updated] == [m.uid for m in store.list_messages(mb.id)]
    with pytest.raises(MailboxNotFound):
        store.changes_since(10**9, 0)


async def test_get_messages_large_and_sparse(store: Store) -> None:
    mb = store.get_mailbox(A, "INBOX")
    for i in range(60):
        await store.append(A, "INBOX", MSG + str(i).encode(), b"", internal_date=1)
    got = store.get_messages(mb.id, range(0, 200, 2))
    assert [m.uid for m in got] == list(range(2, 61, 2))
    assert [m.uid for m in store.get_messages(mb.id, iter([60, 1, 1, 0, -3]))] == [1, 60]
    assert store.get_messages(mb.id, []) == []


@pytest.mark.parametrize("bad", ["", "two words", "a(b", "\\Custom", "x\x01", 'q"'])
async def test_bad_keywords_are_refused(store: Store, bad: str) -> None:
    from mailserver.errors import Cannot

    await store.append(A, "INBOX", MSG, b"", internal_date=1)
    mb = store.get_mailbox(A, "INBOX")
    with pytest.raises(Cannot):
        await store.store_flags(mb.id, [1], "add", frozenset({bad}))
    with pytest.raises(Cannot):
        await store.append(A, "INBOX", MSG, b"", flags=frozenset({bad}), internal_date=1)
    assert store.get_mailbox(A, "INBOX").messages == 1


async def test_keywords_roundtrip(store: Store) -> None:
    flags = frozenset({"$Forwarded", "$MDNSent", "Work", "\\Seen", "ünïcode"})
    rec, _ = await store.append(A, "INBOX", MSG, b"", flags=flags, internal_date=1)
    assert rec.flags == flags
    assert store.list_messages(rec.mailbox_id)[0].flags == flags
