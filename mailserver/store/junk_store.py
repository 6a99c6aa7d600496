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

from collections.abc import Sequence

from mailserver.store import junk_writes
from mailserver.store.base import StoreBase
from mailserver.store.junk_writes import (
    DAY,
    JOURNAL_PREFIX,
    PAIR,
    THRESHOLD,
    day_key,
    feature_key,
    mark_key,
    parse_entry,
    threshold_key,
    totals_key,
)


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
                raw = txn.get(totals_key(model), db=meta)
                return PAIR.unpack(raw) if raw is not None else (0, 0)

            own_totals, glob_totals = totals(account), totals("")
            # The keys' prefixes once (feature_key's layout): this runs for
            # every scored copy, ~250 features twice.
            own_prefix, glob_prefix = feature_key(account, ""), feature_key("", "")
            get, unpack = txn.get, PAIR.unpack
            with_own = own_totals != (0, 0)
            for f in features:
                name = f.encode("utf-8", "replace")
                if with_own:
                    raw = get(own_prefix + name, db=meta)
                    if raw is not None:
                        own[f] = unpack(raw)
                raw = get(glob_prefix + name, db=meta)
                if raw is not None:
                    glob[f] = unpack(raw)
        return own, own_totals, glob, glob_totals

    def junk_totals(self, account: str = "") -> tuple[int, int]:
        """Messages trained ``(spam, ham)`` for ``account`` ("" : the global model)."""
        with self._read() as txn:
            raw = txn.get(totals_key(account.lower()), db=self._dbs.meta)
        return PAIR.unpack(raw) if raw is not None and len(raw) == 8 else (0, 0)

    def junk_trained_as(self, account: str, blob_id: bytes) -> bool | None:
        """How the message was trained for ``account``: True spam, False ham, None not."""
        with self._read() as txn:
            raw = txn.get(mark_key(account.lower(), blob_id), db=self._dbs.meta)
        return None if raw is None else raw == b"s"

    async def junk_train(self, account: str, blob_id: bytes, features: Sequence[str],
                         spam: bool) -> str:
        """Train one message (``junk_writes.train``; one synced commit).  Raises server faults."""
        return str(await self._writer.submit(junk_writes.train, account, blob_id,
                                             list(features), spam))

    async def junk_reset(self, account: str) -> int:
        """Forget ``account``'s own model (``junk_writes.reset``)."""
        return int(await self._writer.submit(junk_writes.reset, account))

    def junk_threshold(self, account: str) -> float | None:
        """``account``'s own threshold, or None (the configured one applies)."""
        with self._read() as txn:
            raw = txn.get(threshold_key(account.lower()), db=self._dbs.meta)
        return THRESHOLD.unpack(raw)[0] if raw is not None and len(raw) == THRESHOLD.size \
            else None

    async def junk_set_threshold(self, account: str, value: float | None) -> None:
        """Set (None: clear) ``account``'s own threshold; one synced commit."""
        await self._writer.submit(junk_writes.set_threshold, account, value)

    def junk_days(self, days: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """The counts of use (``junk_writes.DAY_FIELDS``) of each of ``days``
        (YYYY-MM-DD) that has any."""
        out: dict[str, tuple[int, ...]] = {}
        with self._read() as txn:
            for day in days:
                raw = txn.get(day_key(day), db=self._dbs.meta)
                if raw is not None and len(raw) == DAY.size:
                    out[day] = DAY.unpack(raw)
        return out

    async def junk_add_day(self, day: str, counts: tuple[int, ...]) -> None:
        """Add ``counts`` to ``day``'s; one synced commit (batched by the caller)."""
        await self._writer.submit(junk_writes.add_day, day, tuple(counts))

    def junk_journal(self, limit: int) -> list[junk_writes.JournalEntry]:
        """The oldest ``limit`` trainings from IMAP not yet in the counts."""
        out: list[junk_writes.JournalEntry] = []
        with self._read() as txn:
            cursor = txn.cursor(db=self._dbs.meta)
            if not cursor.set_range(JOURNAL_PREFIX):
                return out
            for key, raw in cursor:
                if not key.startswith(JOURNAL_PREFIX) or len(out) >= limit:
                    break
                entry = parse_entry(bytes(key), bytes(raw))
                if entry is not None:
                    out.append(entry)
        return out

    async def junk_apply(self, day: str, items: list[junk_writes.Applied]) -> int:
        """Apply journal entries (``junk_writes.apply_journal``); one synced commit."""
        return int(await self._writer.submit(junk_writes.apply_journal, day, items))
