"""Write requests on messages, run by the writer thread inside one (child)
transaction each: deliver, append, STORE, EXPUNGE, COPY, MOVE.

Invariants kept here:

* every change of a message gets its own MODSEQ = the mailbox's
  HIGHESTMODSEQ + 1 (RFC 7162 §3.1), recorded in the modseq index
  ``(mailbox, modseq, uid)``; the old index entry of a changed message is
  removed, so the index holds exactly one entry per live message;
* an expunge writes ``(mailbox, modseq) → uid`` to the expunged log (QRESYNC,
  RFC 7162 §3.2.10) and drops one blob reference;
* UIDs grow and are never reused within a UIDVALIDITY (RFC 3501 §2.3.1.1);
* ``Account.used`` follows every add and removal; quota is checked once per
  request, after all its changes, for the accounts whose usage grew;
* the ``\\Recent`` boundary of a mailbox (RFC 3501 §2.3.2) only moves up, and
  only inside the writer, so each UID is claimed by exactly one session.  A
  write that adds messages to the mailbox its session has selected read-write
  (APPEND, COPY, MOVE) may claim them in its own transaction (``claim_for``):
  one synced commit instead of two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from mailserver.errors import Cannot, QuotaExceeded
from mailserver.store import codec, keys, reader, tx
from mailserver.store.model import (
    MailboxInfo,
    MessageRecord,
    NewMessage,
    RecentClaim,
    WriteSpan,
)
from mailserver.store.names import normalize_address, normalize_mailbox
from mailserver.store.writer import WriteCtx

#: Rough octets a message record and its index entries take (for ``need_room``).
_RECORD_OCTETS = 256


class _Box:
    """A mailbox's counters while a request runs (written back once by ``finish``:
    a frozen ``MailboxInfo`` rebuilt per message was a measurable cost of STORE).

    ``unseen``/``deleted``/``deleted_size`` are the flag counters kept beside
    the record (``keys.counts_key``; walked once for a mailbox that has none
    yet), so STATUS and SELECT need no walk over the messages."""

    __slots__ = ("info", "uidnext", "modseq", "messages", "size",
                 "counts", "unseen", "deleted", "deleted_size")

    def __init__(self, info: MailboxInfo, counts: tuple[int, int, int] | None) -> None:
        self.info = info
        self.uidnext = info.uidnext
        self.modseq = info.highestmodseq
        self.messages = info.messages
        self.size = info.size
        self.counts = counts  # as stored; None: not stored yet
        self.unseen, self.deleted, self.deleted_size = counts or (0, 0, 0)

    def count(self, flags: frozenset[str], size: int, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) a message with ``flags`` and ``size``."""
        if "\\Seen" not in flags:
            self.unseen += sign
        if "\\Deleted" in flags:
            self.deleted += sign
            self.deleted_size += sign * size

    def kept_counts(self) -> tuple[int, int, int] | None:
        """The counters to store, None when they are what is stored."""
        now = (self.unseen, self.deleted, self.deleted_size)
        return None if now == self.counts else now

    def current(self) -> MailboxInfo:
        info = self.info
        if (self.uidnext, self.modseq, self.messages, self.size) == (
                info.uidnext, info.highestmodseq, info.messages, info.size):
            return info
        return replace(info, uidnext=self.uidnext, highestmodseq=self.modseq,
                       messages=self.messages, size=self.size)


class _Batch:
    """Mailbox records and usage deltas of one request, written back by ``finish``."""

    __slots__ = ("ctx", "boxes", "usage")

    def __init__(self, ctx: WriteCtx) -> None:
        self.ctx = ctx
        self.boxes: dict[int, _Box] = {}
        self.usage: dict[str, int] = {}

    def _box(self, mb: MailboxInfo) -> _Box:
        box = self.boxes.get(mb.id)
        if box is None:
            txn, dbs = self.ctx.txn, self.ctx.dbs
            counts = reader.stored_counts(txn, dbs, mb.id)
            box = self.boxes[mb.id] = _Box(mb, counts)
            if counts is None:
                box.unseen, box.deleted, box.deleted_size = reader.walk_counts(txn, dbs, mb.id)
        return box

    def span(self, mb: MailboxInfo) -> WriteSpan:
        """``mb``'s HIGHESTMODSEQ before this request and after its changes so far."""
        box = self.boxes.get(mb.id)
        return WriteSpan(mb.id, mb.highestmodseq, mb.highestmodseq if box is None else box.modseq)

    def mailbox(self, mb: MailboxInfo) -> MailboxInfo:
        """``mb`` with this request's changes so far."""
        return self._box(mb).current()

    def add(self, mb: MailboxInfo, rec: MessageRecord, *, keep_uid: bool = False) -> MessageRecord:
        """Insert ``rec``'s contents into ``mb`` with a fresh UID (or its own
        UID when ``keep_uid``) and a fresh MODSEQ.  No blob reference taken."""
        uid, modseq = self.slot(mb, rec.uid if keep_uid else None)
        return self.put(mb, replace(rec, mailbox_id=mb.id, uid=uid, modseq=modseq))

    def slot(self, mb: MailboxInfo, uid: int | None = None) -> tuple[int, int]:
        """The UID (``uid``, or UIDNEXT) and MODSEQ the next ``put`` into ``mb``
        takes: a caller building a new record gives it these at once (a
        ``replace`` per delivered message was a measurable writer cost)."""
        box = self._box(mb)
        if uid is None:
            uid = box.uidnext
        if uid >= tx.MAX_UID:
            raise Cannot("mailbox has run out of UIDs")
        return uid, box.modseq + 1

    def put(self, mb: MailboxInfo, new: MessageRecord) -> MessageRecord:
        """Insert ``new``, whose UID and MODSEQ come from ``slot``."""
        ctx = self.ctx
        box = self._box(mb)
        uid, modseq = new.uid, new.modseq
        tx.put_message(ctx.txn, ctx.dbs, new)
        ctx.txn.put(keys.modseq_key(mb.id, modseq, uid), b"", db=ctx.dbs.modseq)
        box.uidnext = max(box.uidnext, uid + 1)
        box.modseq = modseq
        box.messages += 1
        box.size += new.size
        box.count(new.flags, new.size, 1)
        self.usage[mb.account] = self.usage.get(mb.account, 0) + new.size
        ctx.changed.add(mb.id)
        return new

    def remove(self, mb: MailboxInfo, rec: MessageRecord, *, drop_blob: bool = True) -> None:
        """Expunge ``rec`` from ``mb``, logging the UID for QRESYNC."""
        ctx = self.ctx
        box = self._box(mb)
        modseq = box.modseq + 1
        txn, dbs = ctx.txn, ctx.dbs
        txn.delete(keys.message_key(mb.id, rec.uid), db=dbs.messages)
        txn.delete(keys.modseq_key(mb.id, rec.modseq, rec.uid), db=dbs.modseq)
        txn.put(keys.expunged_key(mb.id, modseq), keys.U32.pack(rec.uid), db=dbs.expunged)
        if drop_blob:
            tx.blob_unref(txn, dbs, rec.blob_id)
        box.modseq = modseq
        box.messages -= 1
        box.size -= rec.size
        box.count(rec.flags, rec.size, -1)
        self.usage[mb.account] = self.usage.get(mb.account, 0) - rec.size
        ctx.changed.add(mb.id)

    def restamp(self, mb: MailboxInfo, uid: int, raw: bytes, modseq: int,
                flags: frozenset[str]) -> MessageRecord:
        """New flags and a new MODSEQ for the existing record ``raw`` (whose
        MODSEQ is ``modseq``), patched in place of a decode and encode."""
        ctx = self.ctx
        box = self._box(mb)
        new_modseq = box.modseq + 1
        new_raw = codec.restamp_message(raw, new_modseq, flags)
        txn, dbs = ctx.txn, ctx.dbs
        txn.delete(keys.modseq_key(mb.id, modseq, uid), db=dbs.modseq)
        txn.put(keys.modseq_key(mb.id, new_modseq, uid), b"", db=dbs.modseq)
        txn.put(keys.message_key(mb.id, uid), new_raw, db=dbs.messages)
        box.modseq = new_modseq
        ctx.changed.add(mb.id)
        new = codec.restamped_record(mb.id, uid, raw, new_modseq, flags)
        box.count(codec.decode_message_flags(raw), new.size, -1)
        box.count(flags, new.size, 1)
        return new

    def finish(self) -> None:
        """Write mailbox records and usage; QuotaExceeded aborts the whole request."""
        txn, dbs = self.ctx.txn, self.ctx.dbs
        for box in self.boxes.values():
            tx.put_mailbox(txn, dbs, box.current())
            kept = box.kept_counts()
            if kept is not None:
                txn.put(keys.counts_key(box.info.id), codec.encode_counts(*kept), db=dbs.meta)
        for address, delta in self.usage.items():
            if delta == 0:
                continue
            acc = tx.get_account(txn, dbs, address)
            if acc is None:
                continue
            used = max(0, acc.used + delta)
            if delta > 0 and acc.quota > 0 and used > acc.quota:
                raise QuotaExceeded(f"quota of {address} exceeded")
            tx.put_account(txn, dbs, replace(acc, used=used))


def deliver(
    ctx: WriteCtx,
    targets: Sequence[NewMessage],
    blob: bytes,
    blob_id: bytes,
    facts: bytes,
    internal_date: int,
    tz_offset: int,
) -> list[MessageRecord]:
    """``Store.deliver`` in the writer thread (``blob_id`` precomputed by the caller)."""
    ctx.need_room(len(blob) + len(facts) + sum(_RECORD_OCTETS + len(t.prefix) for t in targets))
    batch = _Batch(ctx)
    out = []
    for t in targets:
        account = normalize_address(t.account)
        mb = tx.selectable_by_name(ctx.txn, ctx.dbs, account, normalize_mailbox(t.mailbox))
        uid, modseq = batch.slot(mb)
        rec = MessageRecord(
            mailbox_id=mb.id,
            uid=uid,
            flags=codec.normalize_flags(t.flags),
            internal_date=internal_date,
            tz_offset=tz_offset,
            size=len(t.prefix) + len(blob),
            modseq=modseq,
            blob_id=blob_id,
            prefix=t.prefix,
        )
        out.append(batch.put(mb, rec))
    if out:
        tx.blob_ref(ctx.txn, ctx.dbs, blob_id, len(out), blob, facts)
    batch.finish()
    return out


def append(
    ctx: WriteCtx,
    target: NewMessage,
    blob: bytes,
    blob_id: bytes,
    facts: bytes,
    internal_date: int,
    tz_offset: int,
    claim_for: int | None,
) -> tuple[MessageRecord, RecentClaim | None]:
    """``Store.append`` in the writer thread: ``deliver`` to one mailbox, and
    the ``\\Recent`` claim up to the new UID when it landed in ``claim_for``."""
    (rec,) = deliver(ctx, [target], blob, blob_id, facts, internal_date, tz_offset)
    return rec, _claim_for(ctx, claim_for, rec.mailbox_id, rec.uid)


def append_many(
    ctx: WriteCtx,
    target: NewMessage,
    items: Sequence[tuple[bytes, bytes, bytes, frozenset[str], int, int]],
    claim_for: int | None,
) -> tuple[list[MessageRecord], RecentClaim | None]:
    """``Store.append_many`` in the writer thread: every message of a
    MULTIAPPEND (RFC 3502 §6.3.11) into one mailbox in this one request (one
    transaction, one synced commit: all or nothing), UIDs ascending in the
    client's order.  ``items``: ``(blob, blob_id, facts, flags, internal
    date, tz offset)``; ``target``'s flags are unused."""
    ctx.need_room(sum(len(b) + len(f) + _RECORD_OCTETS for b, _, f, _, _, _ in items))
    batch = _Batch(ctx)
    mb = tx.selectable_by_name(ctx.txn, ctx.dbs, normalize_address(target.account),
                               normalize_mailbox(target.mailbox))
    out = []
    for blob, blob_id, facts, flags, internal_date, tz_offset in items:
        uid, modseq = batch.slot(mb)
        out.append(batch.put(mb, MessageRecord(
            mailbox_id=mb.id, uid=uid, flags=codec.normalize_flags(flags),
            internal_date=internal_date, tz_offset=tz_offset, size=len(blob),
            modseq=modseq, blob_id=blob_id, prefix=b"")))
        tx.blob_ref(ctx.txn, ctx.dbs, blob_id, 1, blob, facts)
    batch.finish()
    claim = _claim_for(ctx, claim_for, mb.id, out[-1].uid) if out else None
    return out, claim


def claim_recent(ctx: WriteCtx, mailbox_id: int, upto_uid: int) -> int:
    """Move the mailbox's ``\\Recent`` boundary up to ``upto_uid`` (never down);
    return the boundary before (RFC 3501 §2.3.2, ``Store.claim_recent``)."""
    key = keys.recent_key(mailbox_id)
    raw = ctx.txn.get(key, db=ctx.dbs.meta)
    old = keys.U32.unpack(raw)[0] if raw else 0
    if upto_uid > old:
        ctx.txn.put(key, keys.U32.pack(min(upto_uid, tx.MAX_UID)), db=ctx.dbs.meta)
    return old


def _claim_for(ctx: WriteCtx, claim_for: int | None, mailbox_id: int,
               upto_uid: int) -> RecentClaim | None:
    # Only the mailbox the session has selected: a name that now means a
    # re-created mailbox (another id) is not the session's to claim.
    if claim_for is None or claim_for != mailbox_id or upto_uid <= 0:
        return None
    return RecentClaim(mailbox_id, claim_recent(ctx, mailbox_id, upto_uid), upto_uid)


def store_flags(
    ctx: WriteCtx,
    mailbox_id: int,
    uids: list[int],
    mode: str,
    flags: frozenset[str],
    unchangedsince: int | None,
) -> tuple[list[MessageRecord], list[int], WriteSpan]:
    """``Store.store_flags`` in the writer thread (RFC 3501 §6.4.6, RFC 7162 §3.1.3)."""
    if mode not in ("set", "add", "remove"):
        raise ValueError(f"bad STORE mode {mode!r}")
    mb = tx.require_mailbox_id(ctx.txn, ctx.dbs, mailbox_id)
    batch = _Batch(ctx)
    flags = codec.normalize_flags(flags)
    # Mailboxes share few distinct flag sets (interned): work each out once.
    outcome: dict[frozenset[str], frozenset[str]] = {}
    updated, failed = [], []
    for uid, raw in tx.get_raw_messages(ctx.txn, ctx.dbs, mailbox_id, uids):
        modseq = codec.message_modseq(raw)
        if unchangedsince is not None and modseq > unchangedsince:
            failed.append(uid)
            continue
        old = codec.decode_message_flags(raw)
        new = outcome.get(old)
        if new is None:
            if mode == "set":
                new = flags
            elif mode == "add":
                new = old | flags
            else:
                new = old - flags
            outcome[old] = new
        if new != old:
            updated.append(batch.restamp(mb, uid, raw, modseq, new))
    batch.finish()
    return updated, failed, batch.span(mb)


def expunge(ctx: WriteCtx, mailbox_id: int, uids: list[int] | None,
            hint: tuple[int, list[int]] | None = None) -> tuple[list[int], WriteSpan]:
    """``Store.expunge`` in the writer thread (RFC 3501 §6.4.3, RFC 4315 UID EXPUNGE).

    ``hint`` (with ``uids`` None) is ``(modseq, uids)``: the UIDs flagged
    ``\\Deleted`` as of that MODSEQ, from the reader's cache.  The candidates
    are those plus every message changed since (the MODSEQ index: cost ∝
    changes), each checked here, so the result is what a walk over the whole
    mailbox would give, without the walk.
    """
    txn, dbs = ctx.txn, ctx.dbs
    mb = tx.require_mailbox_id(txn, dbs, mailbox_id)
    if uids is None and hint is not None and hint[0] <= mb.highestmodseq:
        since, flagged = hint
        uids = flagged + tx.uids_changed_since(txn, dbs, mailbox_id, since, mb.highestmodseq)
    if uids is None:
        victims = [
            codec.decode_message(mailbox_id, uid, raw)
            for uid, raw in tx.iter_messages(txn, dbs, mailbox_id)
            if codec.message_is_deleted(raw)
        ]
    else:
        victims = [
            r for r in tx.get_messages(txn, dbs, mailbox_id, uids) if "\\Deleted" in r.flags
        ]
    batch = _Batch(ctx)
    for rec in victims:
        batch.remove(mb, rec)
    batch.finish()
    return [r.uid for r in victims], batch.span(mb)


def copy(
    ctx: WriteCtx,
    mailbox_id: int,
    uids: list[int],
    dest_account: str,
    dest_mailbox: str,
    move: bool,
    claim_for: int | None = None,
) -> tuple[int, list[tuple[int, int]], RecentClaim | None]:
    """``Store.copy``/``Store.move`` in the writer thread (RFC 3501 §6.4.7, RFC 6851),
    with the ``\\Recent`` claim of the copies when ``dest`` is ``claim_for``."""
    txn, dbs = ctx.txn, ctx.dbs
    src = tx.require_mailbox_id(txn, dbs, mailbox_id)
    dest = tx.selectable_by_name(
        txn, dbs, normalize_address(dest_account), normalize_mailbox(dest_mailbox)
    )
    records = tx.get_messages(txn, dbs, mailbox_id, uids)
    if not move:  # MOVE frees what it takes: allowed in the reserve (headroom.py)
        ctx.need_room(_RECORD_OCTETS * len(records))
    batch = _Batch(ctx)
    pairs = []
    for rec in records:
        new = batch.add(dest, rec)
        tx.blob_addref(txn, dbs, rec.blob_id, 1)
        pairs.append((rec.uid, new.uid))
    if move:
        for rec in records:
            batch.remove(src, rec)
    batch.finish()
    claim = _claim_for(ctx, claim_for, dest.id, pairs[-1][1]) if pairs else None
    return dest.uidvalidity, pairs, claim


def purge_mailbox(ctx: WriteCtx, mb: MailboxInfo, *, keep_log: bool) -> int:
    """Remove every message of ``mb`` (dropping blob references); returns the octets freed.

    With ``keep_log`` each removal is a logged expunge with its own MODSEQ
    and the record is rewritten (the mailbox stays, as a ``noselect`` level);
    without it the mailbox's index and log entries go too (the id is retired).
    """
    txn, dbs = ctx.txn, ctx.dbs
    if keep_log:
        batch = _Batch(ctx)
        records = tx.list_messages(txn, dbs, mb.id)
        for rec in records:
            batch.remove(mb, rec)
        batch.finish()
        return sum(r.size for r in records)
    freed = 0
    prefix = keys.mailbox_prefix(mb.id)
    for uid, raw in list(tx.iter_messages(txn, dbs, mb.id)):
        rec = codec.decode_message(mb.id, uid, raw)
        tx.blob_unref(txn, dbs, rec.blob_id)
        freed += rec.size
    for db in (dbs.messages, dbs.modseq, dbs.expunged):
        _delete_prefix(txn, db, prefix)
    txn.delete(keys.counts_key(mb.id), db=dbs.meta)
    ctx.changed.add(mb.id)
    if freed:
        acc = tx.get_account(txn, dbs, mb.account)
        if acc is not None:
            tx.put_account(txn, dbs, replace(acc, used=max(0, acc.used - freed)))
    return freed


def _delete_prefix(txn: object, db: object, prefix: bytes) -> None:
    cur = txn.cursor(db=db)  # type: ignore[attr-defined]
    if not cur.set_range(prefix):
        return
    while cur.key()[: len(prefix)] == prefix:
        if not cur.delete():  # delete moves to the next record; False at the end
            break


def iter_uids(uids: Iterable[int]) -> list[int]:
    """Materialise a caller's UID iterable once (it may be a generator)."""
    return list(uids)
