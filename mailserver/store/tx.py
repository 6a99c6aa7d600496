"""Record access inside one LMDB transaction (read or write), shared by the
read paths of ``Store`` and the write requests run by ``writer.py``.

Functions take ``(txn, dbs, ...)``.  Writers follow one rule: read the current
value inside the write transaction, never from a cache, so several processes
writing the same store stay consistent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from mailserver.errors import AccountNotFound, Cannot, MailboxNotFound
from mailserver.store import codec, keys
from mailserver.store.kv import Dbs
from mailserver.store.model import Account, MailboxInfo, MessageRecord

#: Highest UID (RFC 3501 §2.3.1.1: a 32-bit unsigned, non-zero number).
MAX_UID = 0xFFFFFFFF


# -- counters ----------------------------------------------------------------------


def next_mailbox_id(txn: Any, dbs: Dbs) -> int:
    """Allocate the next mailbox id (from 1, never reused); write transactions only."""
    raw = txn.get(keys.NEXT_MAILBOX_ID_KEY, db=dbs.meta)
    mbid = keys.U64.unpack(raw)[0] if raw else 1
    txn.put(keys.NEXT_MAILBOX_ID_KEY, keys.U64.pack(mbid + 1), db=dbs.meta)
    return mbid


def new_uidvalidity(txn: Any, dbs: Dbs) -> int:
    """A store-wide increasing UIDVALIDITY seeded with the clock (RFC 3501 §2.3.1.1).

    Strictly above every value handed out before, so a name deleted and created
    again (or renamed over) never sees an old UIDVALIDITY again.
    """
    raw = txn.get(keys.LAST_UIDVALIDITY_KEY, db=dbs.meta)
    last = keys.U32.unpack(raw)[0] if raw else 0
    value = max(last + 1, int(time.time()) & 0xFFFFFFFF)
    if value > 0xFFFFFFFF:
        raise Cannot("UIDVALIDITY space exhausted")
    txn.put(keys.LAST_UIDVALIDITY_KEY, keys.U32.pack(value), db=dbs.meta)
    return value


# -- accounts ----------------------------------------------------------------------


def get_account(txn: Any, dbs: Dbs, address: str) -> Account | None:
    """The account keyed by ``address`` (already normalised), or None."""
    raw = txn.get(address.encode(), db=dbs.accounts)
    return None if raw is None else codec.decode_account(address, raw)


def require_account(txn: Any, dbs: Dbs, address: str) -> Account:
    """Like ``get_account``, but raises AccountNotFound when absent."""
    acc = get_account(txn, dbs, address)
    if acc is None:
        raise AccountNotFound(f"no account {address}")
    return acc


def put_account(txn: Any, dbs: Dbs, acc: Account) -> None:
    """Write the account record (insert or replace); write transactions only."""
    txn.put(acc.address.encode(), codec.encode_account(acc), db=dbs.accounts)


# -- mailboxes ---------------------------------------------------------------------


def mailbox_by_id(txn: Any, dbs: Dbs, mailbox_id: int) -> MailboxInfo | None:
    """The mailbox with this id, or None (deleted, or never made)."""
    raw = txn.get(keys.mailbox_key(mailbox_id), db=dbs.mailboxes)
    return None if raw is None else codec.decode_mailbox(mailbox_id, raw)


def require_mailbox_id(txn: Any, dbs: Dbs, mailbox_id: int) -> MailboxInfo:
    """Like ``mailbox_by_id``, but raises MailboxNotFound when absent."""
    mb = mailbox_by_id(txn, dbs, mailbox_id)
    if mb is None:
        raise MailboxNotFound("mailbox no longer exists")
    return mb


def mailbox_id_by_name(txn: Any, dbs: Dbs, account: str, name: str) -> int | None:
    """The id of the account's mailbox ``name`` (already normalised), or None."""
    raw = txn.get(keys.mbname_key(account, name), db=dbs.mbnames)
    return None if raw is None else keys.U64.unpack(raw)[0]


def mailbox_by_name(txn: Any, dbs: Dbs, account: str, name: str) -> MailboxInfo:
    """The mailbox (``name`` already normalised); MailboxNotFound if absent."""
    mbid = mailbox_id_by_name(txn, dbs, account, name)
    mb = None if mbid is None else mailbox_by_id(txn, dbs, mbid)
    if mb is None:
        raise MailboxNotFound(f"no mailbox {name!r}")
    return mb


def selectable_by_name(txn: Any, dbs: Dbs, account: str, name: str) -> MailboxInfo:
    """Like ``mailbox_by_name`` but a ``noselect`` level counts as absent
    (messages cannot go there: RFC 3501 §6.3.4)."""
    mb = mailbox_by_name(txn, dbs, account, name)
    if mb.noselect:
        raise MailboxNotFound(f"mailbox {name!r} holds no messages (\\Noselect)")
    return mb


def iter_account_mailboxes(txn: Any, dbs: Dbs, account: str) -> Iterator[tuple[str, int]]:
    """``(name, id)`` of every mailbox of the account, in byte order of the name."""
    prefix = keys.mbname_prefix(account)
    cur = txn.cursor(db=dbs.mbnames)
    if not cur.set_range(prefix):
        return
    for k, v in cur:
        if not k.startswith(prefix):
            break
        yield bytes(k[len(prefix) :]).decode(), keys.U64.unpack(v)[0]


def put_mailbox(txn: Any, dbs: Dbs, mb: MailboxInfo) -> None:
    """Write the mailbox record (not the name index: see ``put_mailbox_name``)."""
    txn.put(keys.mailbox_key(mb.id), codec.encode_mailbox(mb), db=dbs.mailboxes)


def put_mailbox_name(txn: Any, dbs: Dbs, mb: MailboxInfo) -> None:
    """Write the name index entry ``account NUL name -> id`` (see ``put_mailbox``)."""
    txn.put(keys.mbname_key(mb.account, mb.name), keys.U64.pack(mb.id), db=dbs.mbnames)


# -- messages ----------------------------------------------------------------------


def get_message(txn: Any, dbs: Dbs, mailbox_id: int, uid: int) -> MessageRecord | None:
    """The record of message ``uid`` in the mailbox, or None (expunged or never there)."""
    raw = txn.get(keys.message_key(mailbox_id, uid), db=dbs.messages)
    return None if raw is None else codec.decode_message(mailbox_id, uid, raw)


def iter_messages(
    txn: Any, dbs: Dbs, mailbox_id: int, first_uid: int = 0
) -> Iterator[tuple[int, Any]]:
    """``(uid, raw record)`` of the mailbox from ``first_uid`` on, ascending."""
    prefix = keys.mailbox_prefix(mailbox_id)
    cur = txn.cursor(db=dbs.messages)
    if not cur.set_range(keys.message_key(mailbox_id, first_uid)):
        return
    for k, v in cur:
        if k[:8] != prefix:
            break
        yield keys.U32.unpack_from(k, 8)[0], v


def list_messages(txn: Any, dbs: Dbs, mailbox_id: int) -> list[MessageRecord]:
    """Every record of the mailbox, ascending UID.  The hot loop of SELECT:
    kept flat (no generator, locals for lookups)."""
    prefix = keys.mailbox_prefix(mailbox_id)
    out: list[MessageRecord] = []
    cur = txn.cursor(db=dbs.messages)
    if not cur.set_range(prefix):
        return out
    append = out.append
    decode = codec.decode_message
    uid_at = keys.U32.unpack_from
    for k, v in cur.iternext():
        if k[:8] != prefix:
            break
        append(decode(mailbox_id, uid_at(k, 8)[0], v))
    return out


def get_messages(
    txn: Any, dbs: Dbs, mailbox_id: int, uids: set[int] | list[int]
) -> list[MessageRecord]:
    """Records of the existing UIDs among ``uids``, ascending."""
    decode = codec.decode_message
    return [decode(mailbox_id, uid, raw) for uid, raw in get_raw_messages(txn, dbs, mailbox_id, uids)]


def get_raw_messages(
    txn: Any, dbs: Dbs, mailbox_id: int, uids: set[int] | list[int]
) -> list[tuple[int, Any]]:
    """``(uid, raw record)`` of the existing UIDs among ``uids``, ascending.

    A few or scattered UIDs are looked up one by one; many dense ones are
    gathered in one cursor walk over the span they cover.
    """
    wanted = sorted({u for u in uids if 0 < u <= MAX_UID})
    if not wanted:
        return []
    # A walk reads every record in the span; point lookups cost a B-tree descent
    # each.  Walk only when the wanted UIDs are dense in their span.
    if len(wanted) <= 32 or (wanted[-1] - wanted[0]) > 4 * len(wanted):
        out = []
        db = dbs.messages
        for uid in wanted:
            raw = txn.get(keys.message_key(mailbox_id, uid), db=db)
            if raw is not None:
                out.append((uid, raw))
        return out
    wanted_set = set(wanted)
    last = wanted[-1]
    out = []
    for uid, v in iter_messages(txn, dbs, mailbox_id, wanted[0]):
        if uid > last:
            break
        if uid in wanted_set:
            out.append((uid, v))
    return out


def uids_changed_since(txn: Any, dbs: Dbs, mailbox_id: int, modseq: int,
                       highest: int) -> list[int]:
    """UIDs of the live messages with a MODSEQ above ``modseq`` (the MODSEQ
    index, ascending MODSEQ); ``highest`` is the mailbox's HIGHESTMODSEQ."""
    start = max(modseq, 0) + 1
    if start > highest:
        return []
    prefix = keys.mailbox_prefix(mailbox_id)
    uids = []
    cur = txn.cursor(db=dbs.modseq)
    if cur.set_range(keys.modseq_key(mailbox_id, start, 0)):
        for k in cur.iternext(values=False):
            if k[:8] != prefix:
                break
            uids.append(keys.unpack_modseq_key(k)[2])
    return uids


def put_message(txn: Any, dbs: Dbs, rec: MessageRecord) -> None:
    """Write the message record (insert or replace); write transactions only."""
    txn.put(keys.message_key(rec.mailbox_id, rec.uid), codec.encode_message(rec), db=dbs.messages)


# -- blobs -------------------------------------------------------------------------


def blob_ref(txn: Any, dbs: Dbs, blob_id: bytes, count: int, blob: bytes, facts: bytes) -> None:
    """Add ``count`` references to the blob, storing it (and its facts) if new."""
    raw = txn.get(blob_id, db=dbs.blobrefs)
    if raw is None:
        txn.put(blob_id, blob, db=dbs.blobs)
        txn.put(blob_id, codec.encode_blobref(count, facts), db=dbs.blobrefs)
    else:
        rc, old_facts = codec.decode_blobref(raw)
        # The outbound queue references blobs without facts (b""): a later
        # local delivery of the same bytes brings them.
        kept = old_facts or facts
        txn.put(blob_id, codec.encode_blobref(rc + count, kept), db=dbs.blobrefs)


def blob_addref(txn: Any, dbs: Dbs, blob_id: bytes, count: int) -> None:
    """More references to a blob that exists (COPY)."""
    raw = txn.get(blob_id, db=dbs.blobrefs)
    if raw is None:  # a record without its blob: the store is damaged
        raise RuntimeError(f"blob {blob_id.hex()} is missing")
    rc, facts = codec.decode_blobref(raw)
    txn.put(blob_id, codec.encode_blobref(rc + count, facts), db=dbs.blobrefs)


def blob_unref(txn: Any, dbs: Dbs, blob_id: bytes, count: int = 1) -> None:
    """Drop references; delete the blob with its last reference."""
    raw = txn.get(blob_id, db=dbs.blobrefs)
    if raw is None:
        return
    rc, facts = codec.decode_blobref(raw)
    if rc <= count:
        txn.delete(blob_id, db=dbs.blobrefs)
        txn.delete(blob_id, db=dbs.blobs)
    else:
        txn.put(blob_id, codec.encode_blobref(rc - count, facts), db=dbs.blobrefs)


def blob_refcount(txn: Any, dbs: Dbs, blob_id: bytes) -> int:
    """How many message records use the blob (``blob_id``: SHA-256, 32 bytes); 0 if none."""
    raw = txn.get(blob_id, db=dbs.blobrefs)
    return 0 if raw is None else codec.decode_blobref(raw)[0]


def delete_prefix(txn: Any, db: Any, prefix: bytes) -> int:
    """Delete every key of ``db`` starting with ``prefix``; how many went."""
    doomed = []
    cur = txn.cursor(db=db)
    if cur.set_range(prefix):
        for k in cur.iternext(values=False):
            if not bytes(k).startswith(prefix):
                break
            doomed.append(bytes(k))
    for k in doomed:
        txn.delete(k, db=db)
    return len(doomed)
