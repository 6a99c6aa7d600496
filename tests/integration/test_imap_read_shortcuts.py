"""The read shortcuts of the IMAP hot path, on a real store: the mailbox's
HIGHESTMODSEQ read alone (``reader.mailbox_modseq``, which lets the view sync
and the record cache skip the change walk when nothing was committed, RFC 7162
§3.1.1), and the per-blob cache of FETCH ENVELOPE/BODY/BODYSTRUCTURE values
(RFC 3501 §7.4.2), which must answer exactly what the facts say."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailserver.imap import message
from mailserver.imap.message import MessageAccess
from mailserver.imap.selected import SelectedMailbox
from mailserver.protocol.mime import analyze, items_from_bytes
from mailserver.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / ".." / "shared" / "corpus"
A = "alice@example.org"


def corpus(n: int) -> list[bytes]:
    files = sorted((CORPUS / "messages").glob("*.eml"))
    assert len(files) >= n, f"test corpus missing at {CORPUS}"  # fail, never skip
    return [p.read_bytes() for p in files[:n]]


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path)
    await s.add_domain("example.org")
    await s.add_account(A, "h")
    for blob in corpus(12):
        await s.append(A, "INBOX", blob, analyze(blob).to_bytes(), internal_date=1_700_000_000)
    yield s
    await s.close()


async def test_mailbox_modseq_is_highestmodseq(store: Store) -> None:
    mbid = store.get_mailbox(A, "INBOX").id
    with store.snapshot() as snap:
        assert snap.mailbox_modseq(mbid) == store.get_mailbox_by_id(mbid).highestmodseq
        assert snap.mailbox_modseq(999_999) is None
    await store.store_flags(mbid, [3], "add", frozenset({"\\Flagged"}))
    with store.snapshot() as snap:
        assert snap.mailbox_modseq(mbid) == store.get_mailbox_by_id(mbid).highestmodseq


async def test_sync_sees_every_change_after_an_idle_one(store: Store) -> None:
    view = SelectedMailbox.open(store, A, "INBOX", readonly=False)
    assert view.sync(allow_expunge=True) == []  # nothing committed: the shortcut
    mbid = view.mailbox_id
    await store.store_flags(mbid, [2], "add", frozenset({"\\Seen"}))
    assert view.sync(allow_expunge=True) == [b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n"]
    assert view.sync(allow_expunge=True) == []
    await store.store_flags(mbid, [5], "add", frozenset({"\\Deleted"}))
    await store.expunge(mbid)
    # Held during FETCH/STORE/SEARCH (RFC 3501 §7.4.1), then told on the next
    # command that may carry it, even when nothing else was committed.
    held = view.sync(allow_expunge=False)
    assert all(b"EXPUNGE" not in line for line in held)
    assert view.sync(allow_expunge=True) == [b"* 5 EXPUNGE\r\n"]
    assert view.exists == 11


async def test_cached_items_equal_the_facts(store: Store) -> None:
    message._ITEMS_CACHE.clear()
    recs = store.list_messages(store.get_mailbox(A, "INBOX").id)
    with store.snapshot() as snap:
        first = [(MessageAccess(snap, r).envelope, MessageAccess(snap, r).bodystructure)
                 for r in recs]
    assert all(message.items_cached(r.blob_id) for r in recs)
    with store.snapshot() as snap:
        again = [(MessageAccess(snap, r).envelope, MessageAccess(snap, r).bodystructure)
                 for r in recs]
    assert again == first
    for r, (env, bs) in zip(recs, first, strict=True):
        items = items_from_bytes(store.get_facts(r.blob_id))
        assert (env, bs) == (items[0], items[2])
