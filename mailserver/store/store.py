"""The mail store's public face: accounts, mailboxes, messages, the change feed.

All ``async`` methods that write return only after the LMDB
transaction holding the change has been committed *and synced* (group commit:
see ``writer.py``).  Reads are cheap memory-mapped LMDB reads; the short ones
are plain methods that can be called on the event loop.

Errors: ``mailserver.errors`` — ``MailboxNotFound``, ``AccountNotFound``,
``DomainNotFound``, ``AlreadyExists``, ``InvalidName``, ``QuotaExceeded``,
``Cannot``.  Everything else is a server fault.

Addresses are compared case-insensitively in the domain and case-insensitively
in the local part too (as Dovecot and Postfix users expect); accounts are keyed
by the lower-cased address.

Layout of the pieces: ``kv.py`` opens the environment, ``keys.py``/``codec.py``
define the records, ``tx.py`` reads and writes them inside a transaction,
``admin.py``/``mailboxes.py``/``messages.py`` are the write requests the
single writer thread (``writer.py``) runs, ``feed.py`` wakes waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailserver.errors import InvalidName, MailserverError, NotFound
from mailserver.store import admin, codec, headroom, keys, mailboxes, messages, reader, tx
from mailserver.store import queue as queue_db
from mailserver.store.feed import ChangeFeed
from mailserver.store.kv import Dbs, open_env
from mailserver.store.model import (
    Account,
    Alias,
    Changes,
    Domain,
    MailboxInfo,
    MessageRecord,
    NewMessage,
    RecentClaim,
    WriteSpan,
)
from mailserver.store.names import (
    domain_of,
    normalize_address,
    normalize_domain,
    normalize_mailbox,
)
from mailserver.store.recordcache import RecordCache
from mailserver.store.remote_writer import RemoteWriter
from mailserver.store.writer import Writer
from mailserver.store.writer_service import WriterService
from mailserver.store.writer_wire import SERVICE_NAME

# Hashing a big message takes milliseconds: do that off the event loop.
_HASH_OFF_LOOP = 256 * 1024


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def _blob_id(blob: bytes) -> bytes:
    if len(blob) >= _HASH_OFF_LOOP:
        return await asyncio.to_thread(_sha256, blob)
    return _sha256(blob)


@dataclass(frozen=True, slots=True)
class RecipientLookup:
    """``Store.lookup_recipient``'s answer for one forward-path."""

    local_domain: bool
    account: str | None  # None: no such local recipient (or not a local domain)
    full: bool = False  # the account is at or over its quota


_NOT_LOCAL = RecipientLookup(local_domain=False, account=None)
_UNKNOWN = RecipientLookup(local_domain=True, account=None)


class Store:
    """An open LMDB environment under ``data_dir / "store"``.

    One ``Store`` per process; several processes may open the same directory
    (LMDB serialises writers across processes; each process's change feed also
    hears commits made by the others).  A worker of a multi-process daemon
    opens it with ``remote_writer=True``: its writes go to the supervisor's
    writer service (``writer_service.py``), one group commit for every worker.
    """

    def __init__(self, env: Any, dbs: Dbs, writer: Writer | RemoteWriter, feed: ChangeFeed,
                 path: Path) -> None:
        # Use ``Store.open``; this only assembles the parts.
        self._env = env
        self._dbs = dbs
        self._writer = writer
        self._feed = feed
        self.path = path
        self._closed = False
        self._records = RecordCache(self._read, dbs, self.changes_since)

    @classmethod
    async def open(cls, data_dir: Path, *, map_size: int = 1 << 34,
                   new_mail_limit: float = headroom.NEW_MAIL_LIMIT,
                   remote_writer: bool = False, writer_on_loop: bool = False) -> Store:
        """Open (creating if needed) the store; check the schema version.

        ``map_size`` is the LMDB map size in bytes (sparse on disk).  New mail
        (deliver, APPEND, COPY, queueing) is refused with ``StoreFull`` once
        live data would pass ``new_mail_limit`` of the map, keeping the rest
        for flag changes, EXPUNGE and deletes (``headroom.py``).
        ``remote_writer``: send writes to the writer service of the daemon's
        supervisor (``data_dir/run/writer.stream``, see ``start_writer_service``)
        instead of running a writer thread here.  ``writer_on_loop``: run the
        group-commit rounds on this event loop instead of a thread, for a
        process whose loop does nothing but serve writes (the supervisor's
        writer service): each commit then blocks the loop (see ``writer.py``).
        Raises ``MailserverError`` on a schema version this code does not know.
        Must be called from the running event loop (the change feed binds to it).
        """
        loop = asyncio.get_running_loop()
        data_dir = Path(data_dir)
        path = data_dir / "store"
        env, dbs = await asyncio.to_thread(open_env, path, map_size)
        try:
            feed = ChangeFeed(data_dir / "run", loop)
        except BaseException:
            env.close()
            raise
        # Another process may have opened the map bigger: LMDB then uses its size.
        limit = int(env.info()["map_size"] * new_mail_limit)
        writer: Writer | RemoteWriter
        if remote_writer:
            writer = RemoteWriter(feed.address(SERVICE_NAME), loop, feed.notify, feed.notify_all)
        else:
            writer = Writer(env, dbs, loop, on_commit=feed.broadcast,
                            on_commit_loop=feed.notify, new_mail_limit=limit,
                            on_loop=writer_on_loop)
        return cls(env, dbs, writer, feed, path)

    async def start_writer_service(self) -> WriterService:
        """Serve this store's writer to the workers on ``data_dir/run/writer.stream``
        (``writer_service.py``); ``close`` the service before the store.
        Raises ``OSError``."""
        if not isinstance(self._writer, Writer):
            raise MailserverError("a store with a remote writer cannot serve writes")
        return await WriterService.start(self._writer, self.path.parent / "run")

    async def close(self) -> None:
        """Finish queued writes, stop the writer thread, close the environment."""
        if self._closed:
            return
        self._closed = True
        await self._writer.close()
        self._feed.close()
        self._env.close()

    @property
    def commits(self) -> int:
        """Synced write transactions this process has committed (group-commit
        rounds; 0 with a remote writer: the service's process commits)."""
        return self._writer.commits

    def _read(self) -> Any:
        if self._closed:
            raise MailserverError("store is closed")
        return self._env.begin(buffers=False)

    # -- domains, accounts, aliases ------------------------------------------------

    async def add_domain(self, name: str) -> Domain:
        """Add a local domain.  Raises AlreadyExists, InvalidName."""
        return await self._writer.submit(admin.add_domain, name)

    async def delete_domain(self, name: str) -> None:
        """Remove a domain and its aliases.  DomainNotFound; Cannot if accounts remain."""
        await self._writer.submit(admin.delete_domain, name)

    def list_domains(self) -> list[Domain]:
        with self._read() as txn:
            return [Domain(k.decode()) for k, _ in txn.cursor(db=self._dbs.domains)]

    def is_local_domain(self, name: str) -> bool:
        try:
            key = normalize_domain(name).encode()
        except InvalidName:
            return False
        with self._read() as txn:
            return txn.get(key, db=self._dbs.domains) is not None

    async def add_account(self, address: str, password_hash: str, *, quota: int = 0) -> Account:
        """Create an account (its domain must exist) with ``DEFAULT_MAILBOXES``, subscribed.

        Raises DomainNotFound, AlreadyExists, InvalidName.  ``quota`` in octets, 0 = none.
        """
        return await self._writer.submit(admin.add_account, address, password_hash, quota)

    async def delete_account(self, address: str) -> None:
        """Remove the account, its mailboxes and messages (dropping blob references).

        Aliases pointing at it are removed too.  Raises AccountNotFound.
        """
        await self._writer.submit(admin.delete_account, address)

    async def set_password_hash(self, address: str, password_hash: str) -> None:
        """Replace the argon2 PHC string.  Raises AccountNotFound."""
        await self._writer.submit(admin.set_password_hash, address, password_hash)

    async def set_quota(self, address: str, quota: int) -> None:
        """Set the quota in octets (0 = unlimited).  Raises AccountNotFound."""
        await self._writer.submit(admin.set_quota, address, quota)

    def get_account(self, address: str) -> Account | None:
        try:
            address = normalize_address(address)
        except InvalidName:
            return None
        with self._read() as txn:
            return tx.get_account(txn, self._dbs, address)

    def list_accounts(self, domain: str | None = None) -> list[Account]:
        """Accounts sorted by address, optionally only those of ``domain``."""
        suffix = None if domain is None else "@" + domain.strip().lower()
        out = []
        with self._read() as txn:
            for k, v in txn.cursor(db=self._dbs.accounts):
                address = k.decode()
                if suffix is None or address.endswith(suffix):
                    out.append(codec.decode_account(address, v))
        return out

    async def add_alias(self, address: str, target: str) -> Alias:
        """Alias ``local@domain`` or catch-all ``@domain`` (a local domain) to an account.

        Raises DomainNotFound, AccountNotFound (target), AlreadyExists, InvalidName.
        """
        return await self._writer.submit(admin.add_alias, address, target)

    async def delete_alias(self, address: str) -> None:
        """Raises NotFound."""
        await self._writer.submit(admin.delete_alias, address)

    def list_aliases(self, domain: str | None = None) -> list[Alias]:
        dom = None if domain is None else domain.strip().lower()
        out = []
        with self._read() as txn:
            for k, v in txn.cursor(db=self._dbs.aliases):
                address = k.decode()
                if dom is None or domain_of(address) == dom:
                    out.append(Alias(address, v.decode()))
        return out

    def resolve_recipient(self, address: str) -> str | None:
        """Map a forward-path address to an account address, or ``None``.

        Order: exact account; alias; ``local+tag@domain`` with the ``+tag``
        removed (account, then alias); catch-all alias ``@domain``.
        """
        try:
            address = normalize_address(address)
        except InvalidName:
            return None
        with self._read() as txn:
            return self._resolve(txn, address)

    def lookup_recipient(self, address: str) -> RecipientLookup:
        """What RCPT needs to know of ``local@domain`` (domain in A-labels), in
        one read transaction: ``is_local_domain``, ``resolve_recipient`` and
        whether that account is at or over its quota (three transactions per
        RCPT were ~1.5 % of SMTP ingress CPU)."""
        try:
            key = normalize_domain(address.rpartition("@")[2]).encode()
        except InvalidName:
            return _NOT_LOCAL
        try:
            normalized: str | None = normalize_address(address)
        except InvalidName:
            normalized = None
        with self._read() as txn:
            if txn.get(key, db=self._dbs.domains) is None:
                return _NOT_LOCAL
            account = None if normalized is None else self._resolve(txn, normalized)
            if account is None:
                return _UNKNOWN
            record = tx.get_account(txn, self._dbs, account)
        full = record is not None and bool(record.quota) and record.used >= record.quota
        return RecipientLookup(local_domain=True, account=account, full=full)

    def _resolve(self, txn: Any, address: str) -> str | None:
        """``resolve_recipient`` of a normalized address in ``txn``."""
        local, _, domain = address.rpartition("@")
        candidates = [address]
        base = local.split("+", 1)[0]
        if base and base != local:
            candidates.append(f"{base}@{domain}")
        dbs = self._dbs
        for cand in candidates:
            if txn.get(cand.encode(), db=dbs.accounts) is not None:
                return cand
            target = txn.get(cand.encode(), db=dbs.aliases)
            if target is not None and txn.get(target, db=dbs.accounts) is not None:
                return target.decode()
        target = txn.get(("@" + domain).encode(), db=dbs.aliases)
        if target is not None and txn.get(target, db=dbs.accounts) is not None:
            return target.decode()
        return None

    # -- mailboxes -----------------------------------------------------------------

    def list_mailboxes(self, account: str) -> list[MailboxInfo]:
        """All mailboxes of the account, sorted by name (``noselect`` levels included).

        An unknown account has none.
        """
        try:
            account = normalize_address(account)
        except InvalidName:
            return []
        with self._read() as txn:
            out = []
            for _, mbid in tx.iter_account_mailboxes(txn, self._dbs, account):
                mb = tx.mailbox_by_id(txn, self._dbs, mbid)
                if mb is not None:
                    out.append(mb)
        out.sort(key=lambda m: m.name)
        return out

    def get_mailbox(self, account: str, name: str) -> MailboxInfo:
        """The mailbox; ``name`` "inbox" in any case means INBOX.  Raises MailboxNotFound."""
        account = normalize_address(account)
        name = normalize_mailbox(name)
        with self._read() as txn:
            return tx.mailbox_by_name(txn, self._dbs, account, name)

    def get_mailbox_by_id(self, mailbox_id: int) -> MailboxInfo:
        """The mailbox with that id (its current name).  Raises MailboxNotFound."""
        with self._read() as txn:
            return tx.require_mailbox_id(txn, self._dbs, mailbox_id)

    async def create_mailbox(
        self, account: str, name: str, *, special_use: str | None = None
    ) -> MailboxInfo:
        """Create it (RFC 3501 §6.3.3); missing parent levels are created too.

        UIDVALIDITY is new and never equal to one this name had before.
        Raises AlreadyExists, InvalidName (empty level, leading/trailing delimiter),
        AccountNotFound.
        """
        return await self._writer.submit(mailboxes.create, account, name, special_use)

    async def delete_mailbox(self, account: str, name: str) -> None:
        """Delete it and its messages (RFC 3501 §6.3.4).  INBOX cannot be deleted (Cannot).

        A mailbox with children loses its messages and becomes ``noselect``
        (the name stays as a hierarchy level); deleting a ``noselect`` mailbox
        that still has children raises Cannot.  A later CREATE of a deleted
        name gets a new UIDVALIDITY.
        """
        await self._writer.submit(mailboxes.delete, account, name)

    async def rename_mailbox(self, account: str, old: str, new: str) -> None:
        """RFC 3501 §6.3.5: renames children too; renaming INBOX moves its
        messages to the new mailbox and leaves INBOX empty (new UIDVALIDITY not needed).
        Raises MailboxNotFound, AlreadyExists, InvalidName."""
        await self._writer.submit(mailboxes.rename, account, old, new)

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        """RFC 3501 §6.3.6/§6.3.7.  Raises MailboxNotFound."""
        await self._writer.submit(mailboxes.set_subscribed, account, name, subscribed)

    # -- messages ------------------------------------------------------------------

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
        blob_id = await _blob_id(blob)
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
            data = txn.get(blob_id, db=self._dbs.blobs)
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
    ) -> MessageRecord:
        """IMAP APPEND (RFC 3501 §6.3.11): like ``deliver`` for one mailbox, no prefix."""
        rec, _ = await self.append_claiming(
            account, mailbox, blob, facts, flags=flags, internal_date=internal_date,
            tz_offset=tz_offset, claim_for=None)
        return rec

    async def append_claiming(
        self,
        account: str,
        mailbox: str,
        blob: bytes,
        facts: bytes,
        *,
        flags: frozenset[str] = frozenset(),
        internal_date: int,
        tz_offset: int = 0,
        claim_for: int | None,
    ) -> tuple[MessageRecord, RecentClaim | None]:
        """``append``, and when the message lands in mailbox ``claim_for`` (the
        one the session has selected read-write) the ``\\Recent`` claim up to
        its UID in the same synced commit (RFC 3501 §2.3.2; see
        ``claim_recent``).  The claim is None for another mailbox."""
        target = NewMessage(account=account, mailbox=mailbox, flags=frozenset(flags))
        blob = bytes(blob)
        blob_id = await _blob_id(blob)
        return await self._writer.submit(
            messages.append, target, blob, blob_id, bytes(facts), internal_date, tz_offset,
            claim_for, weight=len(blob) + len(facts),
        )

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        mode: str,
        flags: frozenset[str],
        *,
        unchangedsince: int | None = None,
    ) -> tuple[list[MessageRecord], list[int]]:
        """RFC 3501 §6.4.6 STORE: ``mode`` is "set", "add" or "remove".

        Returns ``(updated, failed)``: the records whose flags actually changed
        (each with a new MODSEQ), and the UIDs refused because their MODSEQ is
        above ``unchangedsince`` (RFC 7162 §3.1.3).  Non-existent UIDs are ignored.
        System flags are matched case-insensitively; ``\\Recent`` is ignored.
        Raises MailboxNotFound, ValueError for another ``mode``.
        """
        updated, failed, _ = await self.store_flags_span(
            mailbox_id, uids, mode, flags, unchangedsince=unchangedsince)
        return updated, failed

    async def store_flags_span(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        mode: str,
        flags: frozenset[str],
        *,
        unchangedsince: int | None = None,
    ) -> tuple[list[MessageRecord], list[int], WriteSpan]:
        """``store_flags`` and the request's ``WriteSpan``: a view current at
        ``span.before`` that takes ``updated`` is current at ``span.after``."""
        updated, failed, span = await self._writer.submit(
            messages.store_flags, mailbox_id, list(uids), mode, frozenset(flags), unchangedsince
        )
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
    ) -> tuple[int, list[tuple[int, int]], RecentClaim | None]:
        """``copy`` or ``move``, with the ``\\Recent`` claim of the copies when
        the destination is mailbox ``claim_for`` (as ``append_claiming``)."""
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

    # -- change feed ---------------------------------------------------------------

    async def wait_for_change(self, mailbox_id: int, modseq: int) -> None:
        """Return as soon as the mailbox's HIGHESTMODSEQ is above ``modseq``.

        Returns at once if it already is.  Woken by commits of this process and
        of other processes on the same store; no polling.  Cancel to stop waiting.
        Raises MailboxNotFound when the mailbox is deleted (also while waiting),
        MailserverError when the store is closed while waiting.
        """
        while True:
            # Register before reading: a commit after the read still wakes us.
            fut = self._feed.register(mailbox_id)
            try:
                if self.get_mailbox_by_id(mailbox_id).highestmodseq > modseq:
                    return
                await fut
            finally:
                self._feed.unregister(mailbox_id, fut)

    async def wait_for_queue_change(self) -> None:
        """Return at the next commit that queued or rescheduled outbound mail,
        in this process or another one on the same store (no polling).

        Raises MailserverError when the store is closed while waiting.
        """
        fut = self._feed.register(keys.QUEUE_FEED_ID)
        try:
            await fut
        finally:
            self._feed.unregister(keys.QUEUE_FEED_ID, fut)

    # -- outbound queue --------------------------------------------------------------
    # Records are opaque bytes here (``mailserver.queue.model`` encodes them);
    # times are Unix seconds.  See ``queue.py`` for the layout and invariant.

    async def queue_add(
        self, queue_id: str, record: bytes, blob: bytes, next_attempt: float
    ) -> bytes:
        """Queue a message durably: record, schedule entry at ``next_attempt``,
        and a reference to the content-addressed blob (stored once).

        Returns the blob id (SHA-256).  RuntimeError if ``queue_id`` is taken.
        """
        blob = bytes(blob)
        blob_id = await _blob_id(blob)
        await self._writer.submit(
            queue_db.add, queue_id, bytes(record), blob, blob_id,
            queue_db.to_ms(next_attempt), weight=len(blob),
        )
        return blob_id

    async def queue_put(self, queue_id: str, record: bytes, next_attempt: float) -> None:
        """Replace a queued record and move it to ``next_attempt``.  Raises NotFound."""
        await self._writer.submit(
            queue_db.put, queue_id, bytes(record), queue_db.to_ms(next_attempt)
        )

    async def queue_reschedule(
        self, queue_ids: Sequence[str], next_attempt: float, *, only_later: bool = True
    ) -> list[str]:
        """Make messages due at ``next_attempt`` (retry/flush).  Returns the ids that exist."""
        return await self._writer.submit(
            queue_db.reschedule, list(queue_ids), queue_db.to_ms(next_attempt), only_later
        )

    async def queue_remove(self, queue_id: str) -> bool:
        """Delete a queued message and drop its blob reference.  False if absent."""
        return await self._writer.submit(queue_db.remove, queue_id)

    def queue_get(self, queue_id: str) -> bytes | None:
        """The record bytes, or None."""
        try:
            queue_id.encode("ascii")
        except UnicodeEncodeError:
            return None
        with self._read() as txn:
            return queue_db.get(txn, self._dbs, queue_id)

    def queue_list(self) -> list[bytes]:
        """Every queued record, in queue id order (creation time)."""
        with self._read() as txn:
            return queue_db.list_all(txn, self._dbs)

    def queue_due(self, now: float, limit: int = 1000) -> list[str]:
        """Ids of messages due at ``now`` or earlier, earliest first, at most ``limit``."""
        with self._read() as txn:
            return queue_db.due(txn, self._dbs, queue_db.to_ms(now), limit)

    def queue_next_due(self) -> float | None:
        """The earliest scheduled attempt (Unix seconds), None for an empty queue."""
        with self._read() as txn:
            ms = queue_db.first_ms(txn, self._dbs)
        return None if ms is None else ms / 1000.0

