"""The message part of ``Store``: deliver, APPEND, read records, blobs and
facts, STORE flags, EXPUNGE, COPY/MOVE, the change log and ``\\Recent``.

The writes are requests of ``messages.py``, run by the writer; reads of many
records go through the per-process ``RecordCache`` (``recordcache.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

from mailserver.errors import MailserverError, NotFound
from mailserver.store import codec, junk_writes, keys, messages, reader, tx
from mailserver.store.base import StoreBase, content_address
from mailserver.store.model import (
    Changes,
    MessageRecord,
    NewMessage,
    RecentClaim,
    WriteSpan,
)


class MessageStore(StoreBase):
    """Messages of mailboxes (see the module docstring)."""

    async def deliver(
        self,
        targets: Sequence[NewMessage],
        blob: bytes,
        facts: bytes,
        *,
        internal_date: int,
        tz_offset: int = 0,
    ) -> list[MessageRecord]:
        """Put one message into every target mailbox in one synced transaction.

        The blob is stored once (content-addressed, reference counted) with
        ``facts`` (opaque bytes: the serialized MIME facts computed by the
        caller, returned by ``get_facts``).  Returns the new records in the
        order of ``targets``.  Each mailbox's UIDNEXT and HIGHESTMODSEQ advance.
        Raises MailboxNotFound, QuotaExceeded (then nothing is written).
        """
        blob = bytes(blob)
        blob_id = await content_address(blob)
        return await self._writer.submit(
            messages.deliver,
            list(targets),
            blob,
            blob_id,
            bytes(facts),
            internal_date,
            tz_offset,
            weight=len(blob) + len(facts),
        )

    def list_messages(self, mailbox_id: int) -> list[MessageRecord]:
        """Every message of the mailbox, ascending UID (what SELECT needs).

        An unknown mailbox id has none.
        """
        with self._read() as txn:
            return tx.list_messages(txn, self._dbs, mailbox_id)

    def list_flags(self, mailbox_id: int) -> tuple[list[int], list[frozenset[str]]]:
        """``(uids, flags)``: every message's UID and flags, ascending UID, as
        parallel lists: what SELECT keeps, read without building records."""
        with self._read() as txn:
            return reader.flag_list(txn, self._dbs, mailbox_id)

    def mailbox_counts(self, mailbox_id: int) -> reader.MailboxCounts:
        """UNSEEN/DELETED/RECENT counts of STATUS (RFC 3501 §6.3.10) in one
        walk over the fixed part of the records.  An unknown id counts zeros."""
        with self._read() as txn:
            return reader.counts(txn, self._dbs, mailbox_id)

    def current_records(self, mailbox_id: int) -> dict[int, MessageRecord]:
        """The mailbox's committed records now, ``{uid: record}`` ascending UID.

        Served from a per-process cache brought up to date by ``changes_since``
        (``recordcache.py``): cost proportional to the changes since the last
        call.  The dict is read-only and valid until the caller's next ``await``.
        Raises MailboxNotFound.
        """
        return self._records.current(mailbox_id)

    def records_since_write(self, span: WriteSpan) -> dict[int, MessageRecord]:
        """The mailbox's records as of ``span.after`` or later, ``{uid: record}``:
        what a command answers with right after its own write (``span``).
        Served from the cache without a read when it holds them (the write
        advanced it), else as ``current_records``.  Raises MailboxNotFound."""
        cached = self._records.peek(span.mailbox_id, span.after)
        return self._records.current(span.mailbox_id) if cached is None else cached

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[reader.Snapshot]:
        """One read transaction for many ``get_blob``/``get_facts`` by one
        command in one thread; see ``reader.py`` (facts come as memoryviews
        valid only inside the ``with``)."""
        if self._closed:
            raise MailserverError("store is closed")
        with self._env.begin(buffers=True) as txn:
            yield reader.Snapshot(txn, self._dbs)

    def get_messages(self, mailbox_id: int, uids: Iterable[int]) -> list[MessageRecord]:
        """The records of those UIDs that exist, ascending UID."""
        uid_list = list(uids)
        with self._read() as txn:
            return tx.get_messages(txn, self._dbs, mailbox_id, uid_list)

    def changes_since(self, mailbox_id: int, modseq: int) -> Changes:
        """Messages changed or added, and UIDs expunged, with MODSEQ > ``modseq``.

        Cost is proportional to the number of changes, not the mailbox size
        (a MODSEQ index).  Expunged UIDs are remembered for QRESYNC (RFC 7162).
        ``updated`` is in ascending UID order.  Raises MailboxNotFound if the
        mailbox was deleted.
        """
        dbs = self._dbs
        start = max(modseq, 0) + 1
        with self._read() as txn:
            mb = tx.require_mailbox_id(txn, dbs, mailbox_id)
            prefix = keys.mailbox_prefix(mailbox_id)
            uids = tx.uids_changed_since(txn, dbs, mailbox_id, modseq, mb.highestmodseq)
            updated = tx.get_messages(txn, dbs, mailbox_id, uids)
            expunged = []
            if start <= mb.highestmodseq:
                cur = txn.cursor(db=dbs.expunged)
                if cur.set_range(keys.expunged_key(mailbox_id, start)):
                    for k, v in cur:
                        if k[:8] != prefix:
                            break
                        expunged.append(keys.U32.unpack(v)[0])
        return Changes(mb, tuple(updated), tuple(sorted(set(expunged))))

    def get_blob(self, blob_id: bytes) -> bytes:
        """The shared bytes of a message (without its per-delivery prefix).

        Raises NotFound when no message references it any more.
        """
        with self._read() as txn:
            data: bytes | None = txn.get(blob_id, db=self._dbs.blobs)
        if data is None:
            raise NotFound("message content no longer exists")
        return data

    def get_facts(self, blob_id: bytes) -> bytes:
        """The opaque facts stored with the blob by ``deliver``/``append``.

        Raises NotFound when no message references the blob any more.
        """
        with self._read() as txn:
            raw = txn.get(blob_id, db=self._dbs.blobrefs)
        if raw is None:
            raise NotFound("message content no longer exists")
        return codec.decode_blobref(raw)[1]

    def blob_refcount(self, blob_id: bytes) -> int:
        """How many message records share the blob (0: it is gone).  For tests and fsck."""
        with self._read() as txn:
            return tx.blob_refcount(txn, self._dbs, blob_id)

    async def append(
        self,
        account: str,
        mailbox: str,
        blob: bytes,
        facts: bytes,
        *,
        flags: frozenset[str] = frozenset(),
        internal_date: int,
        tz_offset: int = 0,
        claim_for: int | None = None,
    ) -> tuple[MessageRecord, RecentClaim | None]:
        """IMAP APPEND (RFC 3501 §6.3.11): like ``deliver`` for one mailbox, no prefix.

        Returns ``(record, claim)``.  When the message lands in mailbox
        ``claim_for`` (the one the session has selected read-write), ``claim``
        is the ``\\Recent`` claim up to its UID, made in the same synced
        commit (RFC 3501 §2.3.2; see ``claim_recent``); otherwise None.
        Raises MailboxNotFound, QuotaExceeded.
        """
        target = NewMessage(account=account, mailbox=mailbox, flags=frozenset(flags))
        blob = bytes(blob)
        blob_id = await content_address(blob)
        return await self._writer.submit(
            messages.append, target, blob, blob_id, bytes(facts), internal_date, tz_offset,
            claim_for, weight=len(blob) + len(facts),
        )

    async def append_many(
        self,
        account: str,
        mailbox: str,
        entries: Sequence[tuple[bytes, bytes, frozenset[str], int, int]],
        *,
        claim_for: int | None = None,
    ) -> tuple[list[MessageRecord], RecentClaim | None]:
        """MULTIAPPEND (RFC 3502): ``entries`` as ``(blob, facts, flags,
        internal date, tz offset)`` appended to one mailbox in one synced
        commit, all or none; records in the client's order (ascending UIDs),
        and the ``\\Recent`` claim as ``append``.  Raises MailboxNotFound,
        QuotaExceeded (nothing stored)."""
        target = NewMessage(account=account, mailbox=mailbox)
        items = []
        for blob, facts, flags, internal_date, tz_offset in entries:
            blob = bytes(blob)
            items.append((blob, await content_address(blob), bytes(facts), frozenset(flags),
                          internal_date, tz_offset))
        return await self._writer.submit(
            messages.append_many, target, items, claim_for,
            weight=sum(len(i[0]) + len(i[2]) for i in items),
        )

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        mode: str,
        flags: frozenset[str],
        *,
        unchangedsince: int | None = None,
        training: junk_writes.Training | None = None,
    ) -> tuple[list[MessageRecord], list[int], WriteSpan]:
        """RFC 3501 §6.4.6 STORE: ``mode`` is "set", "add" or "remove".

        Returns ``(updated, failed, span)``: the records whose flags actually
        changed (each with a new MODSEQ), the UIDs refused because their MODSEQ
        is above ``unchangedsince`` (RFC 7162 §3.1.3), and the request's
        ``WriteSpan`` (a view current at ``span.before`` that takes ``updated``
        is current at ``span.after``).  Non-existent UIDs are ignored.  System
        flags are matched case-insensitively; ``\\Recent`` is ignored.
        ``training``: junk-filter training committed with the flags
        (``junk_writes.Training``).
        Raises MailboxNotFound, ValueError for another ``mode``.
        """
        if training is None:
            updated, failed, span = await self._writer.submit(
                messages.store_flags, mailbox_id, list(uids), mode, frozenset(flags),
                unchangedsince)
        else:
            updated, failed, span = await self._writer.submit(
                junk_writes.store_flags_and_train, mailbox_id, list(uids), mode,
                frozenset(flags), unchangedsince, training)
        self._records.advance(span, updated, ())
        return updated, failed, span

    async def expunge(self, mailbox_id: int, uids: Iterable[int] | None = None) -> list[int]:
        """Remove messages flagged ``\\Deleted`` (only those in ``uids`` if given).

        Returns the expunged UIDs, ascending.  Blob references drop; an
        unreferenced blob is deleted.  Raises MailboxNotFound.
        """
        uid_list = None if uids is None else list(uids)
        # The record cache names the candidates, so the writer need not walk
        # the whole mailbox (``messages.expunge`` checks each one).
        hint = self._records.deleted(mailbox_id) if uid_list is None else None
        gone, span = await self._writer.submit(messages.expunge, mailbox_id, uid_list, hint)
        self._records.advance(span, (), gone)
        return gone

    async def copy(
        self, mailbox_id: int, uids: Iterable[int], dest_account: str, dest_mailbox: str
    ) -> tuple[int, list[tuple[int, int]]]:
        """RFC 3501 §6.4.7 COPY: returns ``(dest UIDVALIDITY, [(src uid, dest uid), ...])``.

        Flags and INTERNALDATE are kept; the blob is shared.  Raises MailboxNotFound
        (the IMAP layer answers ``NO [TRYCREATE]``), QuotaExceeded.
        """
        uidvalidity, pairs, _ = await self.transfer(
            mailbox_id, uids, dest_account, dest_mailbox, move=False)
        return uidvalidity, pairs

    async def move(
        self, mailbox_id: int, uids: Iterable[int], dest_account: str, dest_mailbox: str
    ) -> tuple[int, list[tuple[int, int]]]:
        """RFC 6851 MOVE: copy then expunge the sources, in one transaction."""
        uidvalidity, pairs, _ = await self.transfer(
            mailbox_id, uids, dest_account, dest_mailbox, move=True)
        return uidvalidity, pairs

    async def transfer(
        self, mailbox_id: int, uids: Iterable[int], dest_account: str, dest_mailbox: str,
        *, move: bool, claim_for: int | None = None,
        training: junk_writes.Training | None = None,
    ) -> tuple[int, list[tuple[int, int]], RecentClaim | None]:
        """``copy`` or ``move``, with the ``\\Recent`` claim of the copies when
        the destination is mailbox ``claim_for`` (as ``append``), and the junk
        training it teaches (``junk_writes.Training``) in the same commit."""
        if training is not None:
            return await self._writer.submit(
                junk_writes.copy_and_train, mailbox_id, list(uids), dest_account,
                dest_mailbox, move, claim_for, training)
        return await self._writer.submit(
            messages.copy, mailbox_id, list(uids), dest_account, dest_mailbox, move, claim_for
        )

    # -- \\Recent (RFC 3501 §2.3.2) ---------------------------------------------------

    def recent_boundary(self, mailbox_id: int) -> int:
        """The highest UID a read-write SELECT has already claimed as recent (0: none).

        Messages with a UID above it are ``\\Recent`` for the next session to
        claim them (``claim_recent``).  Cheap read; unknown mailboxes give 0.
        """
        with self._read() as txn:
            raw = txn.get(keys.recent_key(mailbox_id), db=self._dbs.meta)
        return keys.U32.unpack(raw)[0] if raw else 0

    async def claim_recent(self, mailbox_id: int, upto_uid: int) -> int:
        """Move the boundary up to ``upto_uid`` (never down); return the boundary before.

        The session that gets ``old < upto_uid`` owns UIDs ``old+1..upto_uid`` as
        ``\\Recent``: claims are serialised by the writer, so every UID is
        recent for exactly one session.  Nothing is written (and no sync is
        waited for) when the boundary is already there.
        """
        current = self.recent_boundary(mailbox_id)
        if current >= upto_uid:
            return current
        return await self._writer.submit(messages.claim_recent, mailbox_id, upto_uid)

