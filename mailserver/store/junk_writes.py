"""Write requests of the junk classifier's counts (``junk_store.py`` has the
layout), run by the writer in a group commit."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from mailserver.store import messages, tx
from mailserver.store.model import MessageRecord, RecentClaim, WriteSpan
from mailserver.store.writer import WriteCtx

#: A training handed to a write with the IMAP command that asked for it:
#: ``(account, spam, [(blob id, features), ...])`` (plain tuples: the request
#: may travel to the writer service of another process, pickled).
Training = tuple[str, bool, list[tuple[bytes, list[str]]]]

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
    marks; the global model keeps what it learnt).  Returns keys removed."""
    account = account.lower()
    return sum(tx.delete_prefix(ctx.txn, ctx.dbs.meta, prefix) for prefix in (
        b"junk\0" + account.encode() + b"\0", totals_key(account),
        b"junkmsg\0" + account.encode() + b"\0"))


def train_all(ctx: WriteCtx, training: Training) -> list[str]:
    """Writer request part: ``train`` each message of ``training``; the outcomes."""
    account, spam, items = training
    return [train(ctx, account, blob_id, feats, spam) for blob_id, feats in items]


def copy_and_train(ctx: WriteCtx, mailbox_id: int, uids: list[int], dest_account: str,
                   dest_mailbox: str, move: bool, claim_for: int | None,
                   training: Training) -> tuple[int, list[tuple[int, int]], RecentClaim | None]:
    """Writer request: ``messages.copy`` and the junk training it teaches, in one
    transaction (issue #16 §1: training is durable with the move)."""
    result = messages.copy(ctx, mailbox_id, uids, dest_account, dest_mailbox, move, claim_for)
    train_all(ctx, training)
    return result


def store_flags_and_train(ctx: WriteCtx, mailbox_id: int, uids: list[int], mode: str,
                          flags: frozenset[str], unchangedsince: int | None,
                          training: Training
                          ) -> tuple[list[MessageRecord], list[int], WriteSpan]:
    """Writer request: ``messages.store_flags`` (``$Junk``/``$NotJunk``) and its
    training in one transaction."""
    result = messages.store_flags(ctx, mailbox_id, uids, mode, flags, unchangedsince)
    train_all(ctx, training)
    return result
