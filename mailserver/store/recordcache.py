"""A per-process cache of the message records of recently used mailboxes.

FETCH, SEARCH and STORE of an IMAP session need the *current* records of the
selected mailbox; decoding them from LMDB on every command was the biggest
read cost of the IMAP mix (a record costs about 1.5 µs to build, a SEARCH
over a 300-message mailbox 0.45 ms).  The cache keeps, per mailbox, the
records as of a HIGHESTMODSEQ and brings them up to date with
``changes_since`` — whose cost is proportional to what changed — before
handing them out.

Invariants:

* An entry's ``records`` equal the store's committed records at ``modseq``:
  it is filled from one read transaction (mailbox record and message walk
  together) and only advanced by ``changes_since``, which reads the changed
  records and the expunge log in one transaction.  Every write bumps the
  mailbox's HIGHESTMODSEQ (``messages.py``), so nothing can change unseen;
  commits by other processes are seen the same way (the store is the truth).
  So an entry whose ``modseq`` equals the mailbox's HIGHESTMODSEQ is current
  without walking anything (``reader.mailbox_modseq``, one fixed-field read).
* Bounded: at most ``max_records`` records in all, least recently used
  mailboxes evicted first; a mailbox above half the bound is never cached
  (its records are read for each call instead).
* A write of this process may also advance an entry with its own result
  (``advance``), but only when the entry was current just before the write
  (``WriteSpan.before``): then the write's records are exactly what
  ``changes_since`` would read back.
* Used from the event loop (a lock keeps a stray thread safe, not fast).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from mailserver.errors import MailboxNotFound
from mailserver.store import reader, tx
from mailserver.store.kv import Dbs
from mailserver.store.model import Changes, MessageRecord, WriteSpan

#: Records kept across all mailboxes (a record is ~250 octets in memory).
MAX_RECORDS = 200_000


class _Entry:
    __slots__ = ("modseq", "records")

    def __init__(self, modseq: int, records: dict[int, MessageRecord]) -> None:
        self.modseq = modseq
        self.records = records


class RecordCache:
    """``current(mailbox_id)``: the mailbox's records now, keyed by UID."""

    def __init__(self, read: Callable[[], Any], dbs: Dbs,
                 changes_since: Callable[[int, int], Changes],
                 max_records: int = MAX_RECORDS) -> None:
        self._read = read
        self._dbs = dbs
        self._changes_since = changes_since
        self._max = max_records
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def current(self, mailbox_id: int) -> dict[int, MessageRecord]:
        """The committed records of the mailbox, ``{uid: record}`` in ascending
        UID order.  Read-only for the caller, and only valid until its next
        ``await`` (a later call updates the same dict in place).
        Raises MailboxNotFound when the mailbox is gone."""
        with self._lock:
            entry = self._entries.get(mailbox_id)
            if entry is None:
                return self._fill(mailbox_id)
            self._entries.move_to_end(mailbox_id)
            with self._read() as txn:
                now = reader.mailbox_modseq(txn, self._dbs, mailbox_id)
            if now is not None and now <= entry.modseq:
                return entry.records  # nothing committed since: no change walk
            try:
                changes = self._changes_since(mailbox_id, entry.modseq)
            except MailboxNotFound:
                self._drop(mailbox_id)
                raise
            if changes.updated or changes.expunged:
                self._apply(entry, changes.updated, changes.expunged)
            entry.modseq = max(entry.modseq, changes.mailbox.highestmodseq)
            return entry.records

    def peek(self, mailbox_id: int, modseq: int) -> dict[int, MessageRecord] | None:
        """The cached records if they are at least as new as ``modseq`` (no
        read: what a command may answer with right after its own write),
        else None.  Same validity rules as ``current``."""
        with self._lock:
            entry = self._entries.get(mailbox_id)
            if entry is None or entry.modseq < modseq:
                return None
            return entry.records

    def deleted(self, mailbox_id: int) -> tuple[int, list[int]] | None:
        """``(modseq, uids)``: the UIDs flagged ``\\Deleted`` as of that
        HIGHESTMODSEQ, for a cached mailbox (None otherwise: not read here)."""
        with self._lock:
            entry = self._entries.get(mailbox_id)
            if entry is None:
                return None
            return entry.modseq, [u for u, r in entry.records.items()
                                  if "\\Deleted" in r.flags]

    def advance(self, span: WriteSpan, updated: Iterable[MessageRecord],
                expunged: Iterable[int]) -> None:
        """Apply a write's own result (records in ascending UID order) when
        the entry was current at ``span.before``; otherwise leave it for
        ``changes_since``."""
        with self._lock:
            entry = self._entries.get(span.mailbox_id)
            if entry is None or entry.modseq != span.before or span.after < span.before:
                return
            self._apply(entry, updated, expunged)
            entry.modseq = span.after

    def _fill(self, mailbox_id: int) -> dict[int, MessageRecord]:
        with self._read() as txn:
            mb = tx.require_mailbox_id(txn, self._dbs, mailbox_id)
            recs = tx.list_messages(txn, self._dbs, mailbox_id)
        records = {r.uid: r for r in recs}
        if len(records) * 2 > self._max:
            return records  # too big to keep: served uncached
        self._entries[mailbox_id] = _Entry(mb.highestmodseq, records)
        self._size += len(records)
        self._evict()
        return records

    def _apply(self, entry: _Entry, updated: Iterable[MessageRecord],
               expunged: Iterable[int]) -> None:
        records = entry.records
        before = len(records)
        for uid in expunged:
            records.pop(uid, None)
        top = next(reversed(records)) if records else 0
        disordered = False
        for rec in updated:  # ascending UID
            if rec.uid not in records:
                disordered = disordered or rec.uid < top
                top = max(top, rec.uid)
            records[rec.uid] = rec
        if disordered:  # cannot happen (UIDs only grow); keep the order exact anyway
            ordered = sorted(records.items())
            records.clear()
            records.update(ordered)
        self._size += len(records) - before
        self._evict()

    def _drop(self, mailbox_id: int) -> None:
        entry = self._entries.pop(mailbox_id, None)
        if entry is not None:
            self._size -= len(entry.records)

    def _evict(self) -> None:
        while self._size > self._max and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self._size -= len(old.records)
