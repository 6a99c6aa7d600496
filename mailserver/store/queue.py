"""Outbound queue records in LMDB: write requests (run by ``writer.py``) and reads.

The store does not interpret the queue record (``mailserver.queue.model``
does); it keeps, in front of it, the two facts it must know to stay
consistent: the next-attempt time (so the schedule index entry can be moved
or removed with the record, in the same transaction) and the blob id (so the
blob reference is dropped with the record).

Value layout in ``queue``: next attempt ms (u64) | blob id (32 bytes) | record.
Invariant: every ``queue`` record has exactly one ``queuesched`` entry, at its
next-attempt time; both change in one transaction.
"""

from __future__ import annotations

from typing import Any

from mailserver.errors import NotFound
from mailserver.store import keys, tx
from mailserver.store.kv import Dbs
from mailserver.store.writer import WriteCtx

_HEAD = 8 + 32


def to_ms(t: float) -> int:
    """Unix seconds -> integer milliseconds, clamped to the u64 range."""
    return max(0, min(int(t * 1000), (1 << 64) - 1))


def _split(raw: bytes) -> tuple[int, bytes, bytes]:
    return keys.U64.unpack_from(raw)[0], bytes(raw[8:_HEAD]), bytes(raw[_HEAD:])


def add(ctx: WriteCtx, queue_id: str, record: bytes, blob: bytes, blob_id: bytes,
        next_ms: int) -> None:
    """New queued message: record, schedule entry, one blob reference."""
    txn, dbs = ctx.txn, ctx.dbs
    key = queue_id.encode("ascii")
    if txn.get(key, db=dbs.queue) is not None:
        raise RuntimeError(f"queue id {queue_id} is taken")
    ctx.need_room(len(blob) + len(record))
    tx.blob_ref(txn, dbs, blob_id, 1, blob, b"")
    txn.put(key, keys.U64.pack(next_ms) + blob_id + record, db=dbs.queue)
    txn.put(keys.queue_sched_key(next_ms, queue_id), b"", db=dbs.queuesched)
    ctx.changed.add(keys.QUEUE_FEED_ID)


def put(ctx: WriteCtx, queue_id: str, record: bytes, next_ms: int,
        keep_hold: bool = False) -> bool:
    """Replace the record and move its schedule entry.  With ``keep_hold`` a
    held message (``HELD_MS``) stays held: the scheduler's lease and a
    round's result must not lift a hold made while they ran.  Returns
    whether the message is held now.  NotFound if it was deleted."""
    txn, dbs = ctx.txn, ctx.dbs
    key = queue_id.encode("ascii")
    raw = txn.get(key, db=dbs.queue)
    if raw is None:
        raise NotFound(f"no queued message {queue_id}")
    old_ms, blob_id, _ = _split(raw)
    if keep_hold and old_ms >= HELD_MS:
        next_ms = old_ms
    _move(txn, dbs, queue_id, old_ms, next_ms, blob_id, record)
    return next_ms >= HELD_MS


def lease(ctx: WriteCtx, queue_id: str, record: bytes, until_ms: int, due_by_ms: int) -> bool:
    """The scheduler's lease (``queue.storage``): only while the message is due
    at ``due_by_ms`` and not held, replace its record and move it to
    ``until_ms``.  Returns whether it did (False: gone, held, not due)."""
    txn, dbs = ctx.txn, ctx.dbs
    key = queue_id.encode("ascii")
    raw = txn.get(key, db=dbs.queue)
    if raw is None:
        return False
    old_ms, blob_id, _ = _split(raw)
    if old_ms >= HELD_MS or old_ms > due_by_ms:
        return False
    _move(txn, dbs, queue_id, old_ms, until_ms, blob_id, record)
    return True


def _move(txn: Any, dbs: Dbs, queue_id: str, old_ms: int, next_ms: int, blob_id: bytes,
          record: bytes) -> None:
    """Rewrite a record due at ``next_ms`` and move its schedule entry with it."""
    txn.delete(keys.queue_sched_key(old_ms, queue_id), db=dbs.queuesched)
    txn.put(queue_id.encode("ascii"), keys.U64.pack(next_ms) + blob_id + record, db=dbs.queue)
    txn.put(keys.queue_sched_key(next_ms, queue_id), b"", db=dbs.queuesched)


def reschedule(ctx: WriteCtx, queue_ids: list[str], next_ms: int, only_later: bool) -> list[str]:
    """Move each message's schedule entry to ``next_ms`` (records unchanged).

    With ``only_later`` a message already due before ``next_ms`` is left alone.
    Returns the ids that exist.  Used by retry/flush; the record's own
    ``next_attempt`` is only informational, the index rules.
    """
    txn, dbs = ctx.txn, ctx.dbs
    found = []
    for queue_id in queue_ids:
        key = queue_id.encode("ascii")
        raw = txn.get(key, db=dbs.queue)
        if raw is None:
            continue
        old_ms, blob_id, record = _split(raw)
        found.append(queue_id)
        if only_later and old_ms <= next_ms:
            continue
        _move(txn, dbs, queue_id, old_ms, next_ms, blob_id, record)
        ctx.changed.add(keys.QUEUE_FEED_ID)
    return found


def remove(ctx: WriteCtx, queue_id: str) -> bool:
    """Delete the record and its schedule entry; drop the blob reference.

    Returns False when there was no such record.
    """
    txn, dbs = ctx.txn, ctx.dbs
    key = queue_id.encode("ascii")
    raw = txn.get(key, db=dbs.queue)
    if raw is None:
        return False
    old_ms, blob_id, _ = _split(raw)
    txn.delete(keys.queue_sched_key(old_ms, queue_id), db=dbs.queuesched)
    txn.delete(key, db=dbs.queue)
    tx.blob_unref(txn, dbs, blob_id)
    return True


# -- reads (any transaction) -----------------------------------------------------------


def get(txn: Any, dbs: Dbs, queue_id: str) -> bytes | None:
    """The queue record bytes of ``queue_id`` (ASCII), or None when there is none."""
    raw = txn.get(queue_id.encode("ascii"), db=dbs.queue)
    return None if raw is None else _split(raw)[2]


def held_ids(txn: Any, dbs: Dbs) -> set[str]:
    """The ids scheduled at ``HELD_MS`` or later (``queue hold``): the end of
    the schedule index, so a walk backwards stops at the first one that is not."""
    out: set[str] = set()
    cur = txn.cursor(db=dbs.queuesched)
    if not cur.last():
        return out
    while True:
        ms, queue_id = keys.unpack_queue_sched_key(cur.key())
        if ms < HELD_MS:
            return out
        out.add(queue_id)
        if not cur.prev():
            return out


#: The schedule time of a held message (ms): year 9999, past any retry or expiry.
HELD_MS = 253_402_300_799_000


def list_all(txn: Any, dbs: Dbs) -> list[bytes]:
    """Every queue record's bytes, in queue id order."""
    return [_split(v)[2] for _, v in txn.cursor(db=dbs.queue)]


def due(txn: Any, dbs: Dbs, now_ms: int, limit: int) -> list[str]:
    """Queue ids whose next attempt is at or before ``now_ms``, earliest first."""
    out: list[str] = []
    for k in txn.cursor(db=dbs.queuesched).iternext(values=False):
        ms, queue_id = keys.unpack_queue_sched_key(k)
        if ms > now_ms or len(out) >= limit:
            break
        out.append(queue_id)
    return out


def first_ms(txn: Any, dbs: Dbs) -> int | None:
    """The earliest next-attempt time in the index, or None when the queue is empty."""
    cur = txn.cursor(db=dbs.queuesched)
    if not cur.first():
        return None
    return keys.unpack_queue_sched_key(cur.key())[0]
