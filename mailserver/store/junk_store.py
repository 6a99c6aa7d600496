"""The junk classifier's counts in the store (issue #16 §2): per account and
global, updated incrementally by each training, so they survive restarts
and travel with backups.

Layout (``meta`` database, lower-cased account; the global model is the
account ""):

* ``junk\\0<account>\\0<feature>`` -> spam count, ham count (2 u32);
* ``junkn\\0<account>`` -> messages trained as spam, as ham (2 u32);
* ``junkmsg\\0<account>\\0<blob id>`` -> ``s`` or ``h``: how a message was
  trained, so training it the other way first takes that back and training
  it the same way twice counts once.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from mailserver.store.base import StoreBase
from mailserver.store.writer import WriteCtx

_PAIR = struct.Struct(">II")
#: LMDB's longest key.
_MAX_KEY = 511


def _feature_key(account: str, feature: str) -> bytes:
    return b"junk\0" + account.encode() + b"\0" + feature.encode("utf-8", "replace")


def _totals_key(account: str) -> bytes:
    return b"junkn\0" + account.encode()


def _mark_key(account: str, blob_id: bytes) -> bytes:
    return b"junkmsg\0" + account.encode() + b"\0" + blob_id


def _add(ctx: WriteCtx, key: bytes, spam: int, ham: int) -> None:
    if len(key) > _MAX_KEY:
        return
    raw = ctx.txn.get(key, db=ctx.dbs.meta)
    s, h = _PAIR.unpack(raw) if raw is not None and len(raw) == 8 else (0, 0)
    s, h = max(0, s + spam), max(0, h + ham)
    if s or h:
        ctx.txn.put(key, _PAIR.pack(s, h), db=ctx.dbs.meta)
    elif raw is not None:
        ctx.txn.delete(key, db=ctx.dbs.meta)


def _apply(ctx: WriteCtx, account: str, features: Sequence[str], spam: bool,
           sign: int) -> None:
    ds, dh = (sign, 0) if spam else (0, sign)
    for model in (account, ""):
        for f in features:
            _add(ctx, _feature_key(model, f), ds, dh)
        _add(ctx, _totals_key(model), ds, dh)


def train(ctx: WriteCtx, account: str, blob_id: bytes, features: list[str],
          spam: bool) -> str:
    """Writer request: train ``features`` of the message ``blob_id`` as spam
    or ham for ``account`` and the global model.  Returns "trained",
    "retrained" (the other training was taken back first) or "unchanged"."""
    account = account.lower()
    mark = _mark_key(account, blob_id)
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
    doomed = []
    cur = ctx.txn.cursor(db=ctx.dbs.meta)
    for prefix in (b"junk\0" + account.encode() + b"\0", _totals_key(account),
                   b"junkmsg\0" + account.encode() + b"\0"):
        if cur.set_range(prefix):
            for k in cur.iternext(values=False):
                if not bytes(k).startswith(prefix):
                    break
                doomed.append(bytes(k))
    for k in doomed:
        ctx.txn.delete(k, db=ctx.dbs.meta)
    return len(doomed)


class JunkStore(StoreBase):
    """The junk model reads and writes of ``Store``."""

    def junk_counts(self, account: str, features: Sequence[str]
                    ) -> tuple[dict[str, tuple[int, int]], tuple[int, int],
                               dict[str, tuple[int, int]], tuple[int, int]]:
        """``(own counts, own totals, global counts, global totals)`` for
        ``features``, in one read transaction; counts as ``(spam, ham)``,
        features never trained left out."""
        account = account.lower()
        own: dict[str, tuple[int, int]] = {}
        glob: dict[str, tuple[int, int]] = {}
        meta = self._dbs.meta
        with self._read() as txn:
            def totals(model: str) -> tuple[int, int]:
                raw = txn.get(_totals_key(model), db=meta)
                return _PAIR.unpack(raw) if raw is not None else (0, 0)

            own_totals, glob_totals = totals(account), totals("")
            for f in features:
                if own_totals != (0, 0):
                    raw = txn.get(_feature_key(account, f), db=meta)
                    if raw is not None:
                        own[f] = _PAIR.unpack(raw)
                raw = txn.get(_feature_key("", f), db=meta)
                if raw is not None:
                    glob[f] = _PAIR.unpack(raw)
        return own, own_totals, glob, glob_totals

    def junk_totals(self, account: str = "") -> tuple[int, int]:
        """Messages trained ``(spam, ham)`` for ``account`` ("" : the global model)."""
        with self._read() as txn:
            raw = txn.get(_totals_key(account.lower()), db=self._dbs.meta)
        return _PAIR.unpack(raw) if raw is not None and len(raw) == 8 else (0, 0)

    def junk_trained_as(self, account: str, blob_id: bytes) -> bool | None:
        """How the message was trained for ``account``: True spam, False ham, None not."""
        with self._read() as txn:
            raw = txn.get(_mark_key(account.lower(), blob_id), db=self._dbs.meta)
        return None if raw is None else raw == b"s"

    async def junk_train(self, account: str, blob_id: bytes, features: Sequence[str],
                         spam: bool) -> str:
        """Train one message (``train``; one synced commit).  Raises server faults."""
        return str(await self._writer.submit(train, account, blob_id, list(features), spam))

    async def junk_reset(self, account: str) -> int:
        """Forget ``account``'s own model (``reset``)."""
        return int(await self._writer.submit(reset, account))
