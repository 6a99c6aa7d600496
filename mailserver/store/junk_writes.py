"""Write requests of the junk classifier's counts (``junk_store.py`` has the
layout), run by the writer in a group commit.

Training from IMAP goes through a journal: the command's own write adds one
small ``junkq`` entry per message (``journal``), so the user's verdict is
durable with the move in one synced commit; ``apply_journal`` then adds the
message's features to the counts in a later write, many trainings per
transaction.  Why not the counts themselves in the move's commit: a
message's ~200 features touch ~400 keys spread over the B-tree, and dirtying
and syncing those pages made a one-message MOVE ~5 ms slower (the issue
allows 1 ms); batched, messages share most pages (common words).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from mailserver.store import messages, tx
from mailserver.store.model import MessageRecord, RecentClaim, WriteSpan
from mailserver.store.writer import WriteCtx

#: A training handed to a write with the IMAP command that asked for it:
#: ``(account, spam, [blob id, ...], day increments)`` (plain tuples: the
#: request may travel to the writer service of another process, pickled);
#: the increments are ``(YYYY-MM-DD, DAY_FIELDS counts)``.
Training = tuple[str, bool, list[bytes], tuple[str, tuple[int, ...]]]
#: A journal entry as ``junk_journal`` reads it: ``(key, account, blob id, spam)``.
JournalEntry = tuple[bytes, str, bytes, bool]
#: A journal entry with what applying it needs: ``(key, account, blob id,
#: spam, features or None (the message is gone: drop the entry), agreed)``.
Applied = tuple[bytes, str, bytes, bool, list[str] | None, bool]

JOURNAL_PREFIX = b"junkq\0"
_JOURNAL_SEQ = b"junkqseq"
_U64 = struct.Struct(">Q")

#: The per-day counts of the filter's use (``day_key``), in this order:
#: local copies scored, scored as junk, corrections moving mail out of Junk
#: (false positives), into Junk (false negatives), trainings whose label the
#: model already agreed with, trainings.
DAY_FIELDS = ("scored", "junk", "false_positive", "false_negative", "agreed", "trained")
DAY = struct.Struct(">" + "I" * len(DAY_FIELDS))
#: An account's own threshold (an IEEE double).
THRESHOLD = struct.Struct(">d")

#: A spam count and a ham count.
PAIR = struct.Struct(">II")
#: LMDB's longest key.
_MAX_KEY = 511


def feature_key(account: str, feature: str) -> bytes:
    """The key of a feature's counts in ``account``'s model ("": the global one)."""
    return b"junk\0" + account.encode() + b"\0" + feature.encode("utf-8", "replace")


def totals_key(account: str) -> bytes:
    """The key of ``account``'s messages trained."""
    return b"junkn\0" + account.encode()


def mark_key(account: str, blob_id: bytes) -> bytes:
    """The key of how ``account`` trained the message ``blob_id``."""
    return b"junkmsg\0" + account.encode() + b"\0" + blob_id


def threshold_key(account: str) -> bytes:
    """The key of ``account``'s own junk threshold."""
    return b"junkthr\0" + account.encode()


def day_key(day: str) -> bytes:
    """The key of the counts of UTC day ``day`` (YYYY-MM-DD), all accounts."""
    return b"junkday\0" + day.encode()


def add_day(ctx: WriteCtx, day: str, counts: tuple[int, ...]) -> None:
    """Writer request: add ``counts`` (``DAY_FIELDS`` order) to ``day``'s."""
    key = day_key(day)
    raw = ctx.txn.get(key, db=ctx.dbs.meta)
    old = DAY.unpack(raw) if raw is not None and len(raw) == DAY.size else (0,) * DAY.size
    new = [min(0xFFFFFFFF, a + b) for a, b in zip(old, counts, strict=False)]
    new += [0] * (len(DAY_FIELDS) - len(new))
    ctx.txn.put(key, DAY.pack(*new[:len(DAY_FIELDS)]), db=ctx.dbs.meta)


def set_threshold(ctx: WriteCtx, account: str, value: float | None) -> None:
    """Writer request: set ``account``'s own threshold (None: the default again)."""
    key = threshold_key(account.lower())
    if value is None:
        ctx.txn.delete(key, db=ctx.dbs.meta)
    else:
        ctx.txn.put(key, THRESHOLD.pack(value), db=ctx.dbs.meta)


def _add(ctx: WriteCtx, key: bytes, spam: int, ham: int) -> None:
    if len(key) > _MAX_KEY:
        return
    raw = ctx.txn.get(key, db=ctx.dbs.meta)
    s, h = PAIR.unpack(raw) if raw is not None and len(raw) == 8 else (0, 0)
    s, h = max(0, s + spam), max(0, h + ham)
    if s or h:
        ctx.txn.put(key, PAIR.pack(s, h), db=ctx.dbs.meta)
    elif raw is not None:
        ctx.txn.delete(key, db=ctx.dbs.meta)


def _apply(ctx: WriteCtx, account: str, features: Sequence[str], spam: bool,
           sign: int) -> None:
    ds, dh = (sign, 0) if spam else (0, sign)
    for model in (account, ""):
        for f in features:
            _add(ctx, feature_key(model, f), ds, dh)
        _add(ctx, totals_key(model), ds, dh)


def train(ctx: WriteCtx, account: str, blob_id: bytes, features: list[str],
          spam: bool) -> str:
    """Writer request: train ``features`` of the message ``blob_id`` as spam
    or ham for ``account`` and the global model.  Returns "trained",
    "retrained" (the other training was taken back first) or "unchanged"."""
    account = account.lower()
    mark = mark_key(account, blob_id)
    was = ctx.txn.get(mark, db=ctx.dbs.meta)
    now = b"s" if spam else b"h"
    if was == now:
        return "unchanged"
    if was is not None:
        _apply(ctx, account, features, was == b"s", -1)
    _apply(ctx, account, features, spam, 1)
    ctx.txn.put(mark, now, db=ctx.dbs.meta)
    return "retrained" if was is not None else "trained"


def reset(ctx: WriteCtx, account: str) -> int:
    """Writer request: forget ``account``'s own model (counts, totals and
    marks; the global model keeps what it learnt; the account's threshold
    stays).  Returns keys removed."""
    account = account.lower()
    return sum(tx.delete_prefix(ctx.txn, ctx.dbs.meta, prefix) for prefix in (
        b"junk\0" + account.encode() + b"\0", totals_key(account),
        b"junkmsg\0" + account.encode() + b"\0"))


def journal_entry(account: str, blob_id: bytes, spam: bool) -> bytes:
    """A journal entry's value: ``s``/``h``, the blob id's length, the blob id,
    the lower-cased account."""
    return (b"s" if spam else b"h") + bytes([len(blob_id)]) + blob_id + account.lower().encode()


def parse_entry(key: bytes, raw: bytes) -> JournalEntry | None:
    """``(key, account, blob id, spam)`` of a journal entry, None if damaged."""
    if len(raw) < 2 or raw[:1] not in (b"s", b"h") or len(raw) < 2 + raw[1]:
        return None
    n = raw[1]
    return key, raw[2 + n:].decode("utf-8", "replace"), raw[2:2 + n], raw[:1] == b"s"


def journal(ctx: WriteCtx, training: Training) -> None:
    """Writer request part: one journal entry per message of ``training``
    (applied later by ``apply_journal``), and the day's correction counts."""
    account, spam, blob_ids, (day, counts) = training
    add_day(ctx, day, counts)
    meta = ctx.dbs.meta
    raw = ctx.txn.get(_JOURNAL_SEQ, db=meta)
    seq = _U64.unpack(raw)[0] if raw is not None and len(raw) == 8 else 0
    for blob_id in blob_ids:
        seq += 1
        ctx.txn.put(JOURNAL_PREFIX + _U64.pack(seq), journal_entry(account, blob_id, spam),
                    db=meta)
    ctx.txn.put(_JOURNAL_SEQ, _U64.pack(seq), db=meta)


def apply_journal(ctx: WriteCtx, day: str, items: list[Applied]) -> int:
    """Writer request: train each entry of ``items`` that is still in the
    journal (another process may have applied it meanwhile: each entry is
    applied once) and remove it; count the trainings and agreements in
    ``day``.  Returns how many were applied."""
    meta = ctx.dbs.meta
    applied = agreed = 0
    for key, account, blob_id, spam, feats, agrees in items:
        if ctx.txn.get(key, db=meta) is None:
            continue
        ctx.txn.delete(key, db=meta)
        if feats is None:
            continue
        train(ctx, account, blob_id, feats, spam)
        applied += 1
        agreed += agrees
    if applied:
        add_day(ctx, day, (0, 0, 0, 0, agreed, applied))
    return applied


def copy_and_train(ctx: WriteCtx, mailbox_id: int, uids: list[int], dest_account: str,
                   dest_mailbox: str, move: bool, claim_for: int | None,
                   training: Training) -> tuple[int, list[tuple[int, int]], RecentClaim | None]:
    """Writer request: ``messages.copy`` and the junk training it teaches (its
    journal entries), in one transaction (issue #16 §1: training is durable
    with the move)."""
    result = messages.copy(ctx, mailbox_id, uids, dest_account, dest_mailbox, move, claim_for)
    journal(ctx, training)
    return result


def store_flags_and_train(ctx: WriteCtx, mailbox_id: int, uids: list[int], mode: str,
                          flags: frozenset[str], unchangedsince: int | None,
                          training: Training
                          ) -> tuple[list[MessageRecord], list[int], WriteSpan]:
    """Writer request: ``messages.store_flags`` (``$Junk``/``$NotJunk``) and its
    training in one transaction."""
    result = messages.store_flags(ctx, mailbox_id, uids, mode, flags, unchangedsince)
    journal(ctx, training)
    return result
