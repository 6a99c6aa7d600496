"""The store as asynchronous interfaces, one per part, each with an LMDB and a
PostgreSQL implementation (issue #17 §1): the seam the scale-out store grows
along.  So far: the directory (``Directory``), mailboxes (``Mailboxes``:
CREATE, DELETE, RENAME, subscriptions), mailboxes' messages
(``Messages``: APPEND, the message list, STORE, EXPUNGE, blobs) and what
SMTP's local delivery needs (``StoreDelivery``, ``delivery.interface.LocalStore``).

Every method is a coroutine: on LMDB a read is a local memory-mapped lookup
(the adapter calls the synchronous ``Store`` method directly: microseconds,
no thread), on PostgreSQL it is a network round trip.  Writes are committed
and synced when they return, on both.  Errors are our own hierarchy
(``mailserver.errors``): the same exception for the same mistake on both
backends, which the shared tests (``tests/integration/test_directory_backends.py``)
hold them to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from mailserver.errors import NotFound
from mailserver.store.directory import RecipientStatus
from mailserver.store.model import (
    Account,
    Alias,
    Changes,
    Domain,
    MailboxInfo,
    MessageRecord,
    NewMessage,
    ScramKeys,
)
from mailserver.store.reader import MailboxCounts
from mailserver.store.store import Store


class Directory(Protocol):
    """Domains, accounts and aliases, and where a forward-path delivers."""

    async def add_domain(self, name: str) -> Domain:
        """Add a local domain.  Raises AlreadyExists, InvalidName."""
        ...

    async def delete_domain(self, name: str) -> None:
        """Remove a domain and its aliases.  Raises DomainNotFound; Cannot while
        accounts remain."""
        ...

    async def list_domains(self) -> list[Domain]:
        """Every local domain, by name."""
        ...

    async def is_local_domain(self, name: str) -> bool:
        """``name`` (any case) is ours; False for an invalid name."""
        ...

    async def add_account(self, address: str, password_hash: str, *,
                          quota: int = 0, scram: ScramKeys | None = None) -> Account:
        """Create an account with the default mailboxes; ``scram``: the SCRAM keys
        of the same password (None: made at its first login).  Raises
        DomainNotFound, AlreadyExists, InvalidName, ValueError (negative quota)."""
        ...

    async def set_password_hash(self, address: str, password_hash: str,
                                scram: ScramKeys | None = None) -> None:
        """Replace the password's PHC string and SCRAM keys.  Raises AccountNotFound."""
        ...

    async def delete_account(self, address: str) -> None:
        """Remove the account, its mail, and it from every alias (an alias left
        without targets goes).  Raises AccountNotFound."""
        ...

    async def get_account(self, address: str) -> Account | None:
        """The account of ``address`` (any case), None (also for an invalid one)."""
        ...

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        """Accounts by address, of ``domain`` only when given."""
        ...

    async def set_disabled(self, address: str, disabled: bool) -> None:
        """Disable or enable logins.  Raises AccountNotFound."""
        ...

    async def rehash_password(self, address: str, old_hash: str, new_hash: str) -> bool:
        """Replace the PHC string ``old_hash`` by ``new_hash`` (the same password,
        new parameters) unless it changed meanwhile; True when replaced."""
        ...

    async def set_scram_keys(self, address: str, password_hash: str, scram: ScramKeys) -> bool:
        """Store SCRAM keys (RFC 5802 §3) made from the password just verified
        against ``password_hash``, unless the hash changed meanwhile; True when stored."""
        ...

    async def set_quota(self, address: str, quota: int) -> None:
        """Quota in octets (0: none).  Raises AccountNotFound, ValueError."""
        ...

    async def add_alias(self, address: str, targets: str | list[str]) -> Alias:
        """Alias ``local@domain`` or catch-all ``@domain`` to accounts and remote
        addresses.  Raises DomainNotFound, AccountNotFound (a local target that
        is no account), AlreadyExists, InvalidName, ValueError (no target)."""
        ...

    async def delete_alias(self, address: str) -> None:
        """Raises NotFound, InvalidName."""
        ...

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        """Aliases by address, of ``domain`` only when given."""
        ...

    async def recipient_status(self, address: str) -> RecipientStatus:
        """What RCPT needs of a forward-path (see ``store.directory``)."""
        ...

    async def has_sent_to(self, account: str, recipient: str) -> bool:
        """Whether ``account`` sent mail to ``recipient`` before (any case; the
        first-time recipient limit, ``checks/limits.py``)."""
        ...

    async def remember_sent(self, account: str, recipients: Sequence[str]) -> None:
        """Mark ``recipients`` as sent to by ``account``."""
        ...

    async def recipient_account(self, address: str) -> str | None:
        """The first account ``address`` (domain in A-labels) delivers to: the
        account, an alias, ``local+tag`` without the tag, the catch-all; None
        for nobody (and for an invalid address)."""
        ...


class Mailboxes(Protocol):
    """An account's mailboxes (RFC 3501 §6.3.3-§6.3.7; names as ``store.names``)."""

    async def list_mailboxes(self, account: str) -> list[MailboxInfo]:
        """Every mailbox of the account by name, ``noselect`` levels included
        (none for an unknown account)."""
        ...

    async def gone_subscriptions(self, account: str) -> list[str]:
        """Subscribed names whose mailbox no longer exists (§6.3.6; LIST shows
        them ``\\NonExistent``, RFC 5258 §3.1), sorted."""
        ...

    async def get_mailbox(self, account: str, name: str) -> MailboxInfo:
        """The mailbox ("inbox" in any case is INBOX).  Raises MailboxNotFound."""
        ...

    async def get_mailbox_by_id(self, mailbox_id: int) -> MailboxInfo:
        """The mailbox of that id, under its current name.  Raises MailboxNotFound."""
        ...

    async def mailbox_counts(self, mailbox_id: int) -> MailboxCounts:
        """What STATUS counts (RFC 3501 §6.3.10, RFC 9051 §6.3.11, RFC 9208
        §4.4): unseen, deleted, their size, recent.  Zeros for an unknown id."""
        ...

    async def create_mailbox(self, account: str, name: str, *,
                             special_use: str | None = None) -> MailboxInfo:
        """CREATE (§6.3.3): missing superior levels too; a UIDVALIDITY above any
        this name had.  Raises AlreadyExists, InvalidName, AccountNotFound."""
        ...

    async def delete_mailbox(self, account: str, name: str) -> None:
        """DELETE (§6.3.4): with inferiors, its messages go and it stays a
        ``noselect`` level.  Raises MailboxNotFound, Cannot (INBOX; a
        ``noselect`` level with inferiors)."""
        ...

    async def rename_mailbox(self, account: str, old: str, new: str) -> None:
        """RENAME (§6.3.5), inferiors along; INBOX's messages move, UIDs kept,
        and INBOX stays empty.  Raises MailboxNotFound, AlreadyExists, Cannot
        (into its own hierarchy), InvalidName."""
        ...

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        """SUBSCRIBE/UNSUBSCRIBE (§6.3.6, §6.3.7); UNSUBSCRIBE of a gone
        subscription too.  Raises MailboxNotFound, AccountNotFound."""
        ...


class Messages(Protocol):
    """The messages of mailboxes (RFC 3501 §2.3): UIDs, flags, MODSEQs (RFC 7162)."""

    async def get_mailbox(self, account: str, name: str) -> MailboxInfo:
        """The mailbox as committed (UIDNEXT, HIGHESTMODSEQ, counts).  Raises
        MailboxNotFound."""
        ...

    async def append(self, account: str, mailbox: str, blob: bytes, facts: bytes, *,
                     flags: frozenset[str] = frozenset(), internal_date: int,
                     tz_offset: int = 0) -> MessageRecord:
        """APPEND (RFC 3501 §6.3.11): the next UID at a new MODSEQ; ``blob`` the
        octets, ``facts`` its MIME facts, ``internal_date`` POSIX seconds.
        Raises MailboxNotFound, QuotaExceeded, Cannot (an invalid flag)."""
        ...

    async def deliver(self, targets: Sequence[NewMessage], blob: bytes, facts: bytes, *,
                      internal_date: int, tz_offset: int = 0) -> list[MessageRecord]:
        """SMTP delivery: ``blob`` (octets) into every target mailbox, each copy
        after its target's ``prefix`` (trace fields), in one synced commit; the
        blob is stored once.  ``internal_date`` POSIX seconds, ``tz_offset``
        minutes.  One record per target, in order.  Raises MailboxNotFound,
        QuotaExceeded (any target's account over its quota: nothing is stored)."""
        ...

    async def append_many(self, account: str, mailbox: str,
                          entries: Sequence[tuple[bytes, bytes, frozenset[str], int, int]],
                          ) -> list[MessageRecord]:
        """MULTIAPPEND (RFC 3502): ``entries`` as ``(blob, facts, flags, internal
        date, tz offset)`` into one mailbox in one synced commit, all or none;
        records in the given order, ascending UIDs.  Raises MailboxNotFound,
        QuotaExceeded (nothing stored)."""
        ...

    async def recent_boundary(self, mailbox_id: int) -> int:
        """The highest UID a session has claimed as ``\\Recent`` (RFC 3501
        §2.3.2; 0: none, or no such mailbox)."""
        ...

    async def claim_recent(self, mailbox_id: int, upto_uid: int) -> int:
        """Move the boundary up to ``upto_uid`` (never down); the boundary
        before: UIDs above it up to ``upto_uid`` are recent for the caller
        alone.  Raises MailboxNotFound."""
        ...

    async def wait_for_change(self, mailbox_id: int, modseq: int) -> None:
        """Return once the mailbox's HIGHESTMODSEQ is above ``modseq`` (at once
        if it is); woken by commits of any process (or node).  Cancel to stop
        waiting.  Raises MailboxNotFound (deleted, also while waiting)."""
        ...

    async def list_messages(self, mailbox_id: int) -> list[MessageRecord]:
        """Every message of the mailbox, ascending UID."""
        ...

    async def store_flags(self, mailbox_id: int, uids: Iterable[int], mode: str,
                          flags: frozenset[str]) -> list[MessageRecord]:
        """STORE (RFC 3501 §6.4.6; ``mode`` "set", "add", "remove"): the
        records whose flags changed, each at a new MODSEQ.  Raises
        MailboxNotFound, ValueError (mode), Cannot (an invalid flag)."""
        ...

    async def expunge(self, mailbox_id: int, uids: Iterable[int] | None = None) -> list[int]:
        """Remove the ``\\Deleted`` messages (of ``uids`` only, when given);
        their UIDs, ascending.  Raises MailboxNotFound."""
        ...

    async def transfer(self, mailbox_id: int, uids: Iterable[int], dest_account: str,
                       dest_mailbox: str, *, move: bool) -> tuple[int, list[tuple[int, int]]]:
        """COPY (RFC 3501 §6.4.7) or MOVE (RFC 6851) of the messages of ``uids``
        that exist, flags kept, in one synced commit (MOVE: expunged from the
        source, logged).  Returns the destination's UIDVALIDITY and ``(source
        UID, new UID)`` pairs, ascending (UIDPLUS COPYUID, RFC 4315 §3).
        Raises MailboxNotFound (either mailbox; a ``noselect`` destination),
        QuotaExceeded (nothing copied)."""
        ...

    async def changes_since(self, mailbox_id: int, modseq: int) -> Changes:
        """What changed after ``modseq`` (CONDSTORE/QRESYNC, RFC 7162): the
        messages with a greater MODSEQ (new ones too), ascending UID, and the
        UIDs expunged after it, ascending; the mailbox as of then.  Raises
        MailboxNotFound."""
        ...

    async def get_facts(self, blob_id: bytes) -> bytes:
        """The MIME facts stored with the blob (opaque bytes).  Raises NotFound."""
        ...

    async def get_blob(self, blob_id: bytes) -> bytes:
        """A message's stored octets by blob id.  Raises NotFound."""
        ...


class LmdbMailboxes:
    """``Mailboxes`` over the LMDB ``Store``."""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    async def list_mailboxes(self, account: str) -> list[MailboxInfo]:
        """See ``Mailboxes``."""
        return self.store.list_mailboxes(account)

    async def gone_subscriptions(self, account: str) -> list[str]:
        """See ``Mailboxes``."""
        return self.store.gone_subscriptions(account)

    async def get_mailbox(self, account: str, name: str) -> MailboxInfo:
        """See ``Mailboxes``."""
        return self.store.get_mailbox(account, name)

    async def get_mailbox_by_id(self, mailbox_id: int) -> MailboxInfo:
        """See ``Mailboxes``."""
        return self.store.get_mailbox_by_id(mailbox_id)

    async def mailbox_counts(self, mailbox_id: int) -> MailboxCounts:
        """See ``Mailboxes``."""
        return self.store.mailbox_counts(mailbox_id)

    async def create_mailbox(self, account: str, name: str, *,
                             special_use: str | None = None) -> MailboxInfo:
        """See ``Mailboxes``."""
        return await self.store.create_mailbox(account, name, special_use=special_use)

    async def delete_mailbox(self, account: str, name: str) -> None:
        """See ``Mailboxes``."""
        await self.store.delete_mailbox(account, name)

    async def rename_mailbox(self, account: str, old: str, new: str) -> None:
        """See ``Mailboxes``."""
        await self.store.rename_mailbox(account, old, new)

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        """See ``Mailboxes``."""
        await self.store.set_subscribed(account, name, subscribed)


def as_mailboxes(m: LmdbMailboxes) -> Mailboxes:
    """``m`` as the protocol (mypy checks that the adapter meets it)."""
    return m


class LmdbMessages:
    """``Messages`` over the LMDB ``Store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get_mailbox(self, account: str, name: str) -> MailboxInfo:
        """See ``Messages``."""
        return self.store.get_mailbox(account, name)

    async def append(self, account: str, mailbox: str, blob: bytes, facts: bytes, *,
                     flags: frozenset[str] = frozenset(), internal_date: int,
                     tz_offset: int = 0) -> MessageRecord:
        """See ``Messages``."""
        record, _ = await self.store.append(account, mailbox, blob, facts, flags=flags,
                                            internal_date=internal_date, tz_offset=tz_offset)
        return record

    async def deliver(self, targets: Sequence[NewMessage], blob: bytes, facts: bytes, *,
                      internal_date: int, tz_offset: int = 0) -> list[MessageRecord]:
        """See ``Messages``."""
        return await self.store.deliver(targets, blob, facts, internal_date=internal_date,
                                        tz_offset=tz_offset)

    async def append_many(self, account: str, mailbox: str,
                          entries: Sequence[tuple[bytes, bytes, frozenset[str], int, int]],
                          ) -> list[MessageRecord]:
        """See ``Messages``."""
        records, _ = await self.store.append_many(account, mailbox, entries)
        return records

    async def recent_boundary(self, mailbox_id: int) -> int:
        """See ``Messages``."""
        return self.store.recent_boundary(mailbox_id)

    async def claim_recent(self, mailbox_id: int, upto_uid: int) -> int:
        """See ``Messages``."""
        self.store.get_mailbox_by_id(mailbox_id)  # MailboxNotFound, as on PostgreSQL
        return await self.store.claim_recent(mailbox_id, upto_uid)

    async def wait_for_change(self, mailbox_id: int, modseq: int) -> None:
        """See ``Messages``."""
        await self.store.wait_for_change(mailbox_id, modseq)

    async def list_messages(self, mailbox_id: int) -> list[MessageRecord]:
        """See ``Messages``."""
        return self.store.list_messages(mailbox_id)

    async def store_flags(self, mailbox_id: int, uids: Iterable[int], mode: str,
                          flags: frozenset[str]) -> list[MessageRecord]:
        """See ``Messages``."""
        updated, _, _ = await self.store.store_flags(mailbox_id, uids, mode, flags)
        return updated

    async def expunge(self, mailbox_id: int, uids: Iterable[int] | None = None) -> list[int]:
        """See ``Messages``."""
        return await self.store.expunge(mailbox_id, uids)

    async def transfer(self, mailbox_id: int, uids: Iterable[int], dest_account: str,
                       dest_mailbox: str, *, move: bool) -> tuple[int, list[tuple[int, int]]]:
        """See ``Messages``."""
        validity, pairs, _ = await self.store.transfer(mailbox_id, uids, dest_account,
                                                       dest_mailbox, move=move)
        return validity, pairs

    async def changes_since(self, mailbox_id: int, modseq: int) -> Changes:
        """See ``Messages``."""
        return self.store.changes_since(mailbox_id, modseq)

    async def get_facts(self, blob_id: bytes) -> bytes:
        """See ``Messages``."""
        return self.store.get_facts(blob_id)

    async def get_blob(self, blob_id: bytes) -> bytes:
        """See ``Messages``."""
        return self.store.get_blob(blob_id)


class LmdbDirectory:
    """``Directory`` over the LMDB ``Store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add_domain(self, name: str) -> Domain:
        """See ``Directory``."""
        return await self.store.add_domain(name)

    async def delete_domain(self, name: str) -> None:
        """See ``Directory``."""
        await self.store.delete_domain(name)

    async def list_domains(self) -> list[Domain]:
        """See ``Directory``."""
        return self.store.list_domains()

    async def is_local_domain(self, name: str) -> bool:
        """See ``Directory``."""
        return self.store.is_local_domain(name)

    async def add_account(self, address: str, password_hash: str, *,
                          quota: int = 0, scram: ScramKeys | None = None) -> Account:
        """See ``Directory``."""
        return await self.store.add_account(address, password_hash, quota=quota, scram=scram)

    async def set_password_hash(self, address: str, password_hash: str,
                                scram: ScramKeys | None = None) -> None:
        """See ``Directory``."""
        await self.store.set_password_hash(address, password_hash, scram)

    async def delete_account(self, address: str) -> None:
        """See ``Directory``."""
        await self.store.delete_account(address)

    async def get_account(self, address: str) -> Account | None:
        """See ``Directory``."""
        return self.store.get_account(address)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        """See ``Directory``."""
        return self.store.list_accounts(domain)

    async def set_disabled(self, address: str, disabled: bool) -> None:
        """See ``Directory``."""
        await self.store.set_disabled(address, disabled)

    async def rehash_password(self, address: str, old_hash: str, new_hash: str) -> bool:
        """See ``Directory``."""
        return await self.store.rehash_password(address, old_hash, new_hash)

    async def set_scram_keys(self, address: str, password_hash: str, scram: ScramKeys) -> bool:
        """See ``Directory``."""
        return await self.store.set_scram_keys(address, password_hash, scram)

    async def set_quota(self, address: str, quota: int) -> None:
        """See ``Directory``."""
        await self.store.set_quota(address, quota)

    async def add_alias(self, address: str, targets: str | list[str]) -> Alias:
        """See ``Directory``."""
        return await self.store.add_alias(address, targets)

    async def delete_alias(self, address: str) -> None:
        """See ``Directory``."""
        await self.store.delete_alias(address)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        """See ``Directory``."""
        return self.store.list_aliases(domain)

    async def recipient_status(self, address: str) -> RecipientStatus:
        """See ``Directory``."""
        return self.store.recipient_status(address)

    async def recipient_account(self, address: str) -> str | None:
        """See ``Directory``."""
        return self.store.recipient_account(address)

    async def has_sent_to(self, account: str, recipient: str) -> bool:
        """Whether ``account`` sent mail to ``recipient`` before (the
        first-time recipient limit; a local read)."""
        return self.store.has_sent_to(account, recipient)

    async def remember_sent(self, account: str, recipients: Sequence[str]) -> None:
        """Mark ``recipients`` as sent to by ``account`` (one synced commit)."""
        await self.store.remember_sent(account, recipients)


class StoreDelivery:
    """What local delivery needs (``delivery.interface.LocalStore``) on either
    backend: the directory's answer and one synced commit per message."""

    __slots__ = ("directory", "messages")

    def __init__(self, directory: Directory, messages: Messages) -> None:
        self.directory = directory
        self.messages = messages

    async def recipient_account(self, address: str) -> str | None:
        """The account ``address`` delivers to, or None (``Directory.recipient_account``)."""
        return await self.directory.recipient_account(address)

    async def deliver(self, targets: Sequence[NewMessage], blob: bytes, facts: bytes, *,
                      internal_date: int, tz_offset: int = 0) -> list[MessageRecord]:
        """``Messages.deliver``."""
        return await self.messages.deliver(targets, blob, facts, internal_date=internal_date,
                                           tz_offset=tz_offset)


def lmdb_delivery(store: Store) -> StoreDelivery:
    """``StoreDelivery`` over the LMDB ``Store``."""
    return StoreDelivery(LmdbDirectory(store), LmdbMessages(store))


def as_directory(d: LmdbDirectory) -> Directory:
    """``d`` as the protocol (mypy checks that the adapter meets it)."""
    return d


def as_messages(m: LmdbMessages) -> Messages:
    """``m`` as the protocol (mypy checks that the adapter meets it)."""
    return m


class LmdbQueue:
    """The outbound queue's store (``queue.storage.QueueStore``) over the LMDB
    ``Store``.  One scheduler serves an LMDB store (the supervisor's), so a
    lease, once taken, is never lost: ``queue_settle`` fails only for a
    message deleted meanwhile."""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    async def queue_add(self, queue_id: str, record: bytes, blob: bytes,
                        next_attempt: float) -> bytes:
        """See ``QueueStore``."""
        return await self.store.queue_add(queue_id, record, blob, next_attempt)

    async def queue_due(self, now: float, limit: int) -> list[str]:
        """See ``QueueStore``."""
        return self.store.queue_due(now, limit)

    async def queue_next_due(self) -> float | None:
        """See ``QueueStore``."""
        return self.store.queue_next_due()

    async def queue_get(self, queue_id: str) -> bytes | None:
        """See ``QueueStore``."""
        return self.store.queue_get(queue_id)

    async def queue_list(self) -> list[bytes]:
        """See ``QueueStore``."""
        return self.store.queue_list()

    async def queue_lease(self, queue_id: str, record: bytes, until: float, *,
                          due_by: float) -> bool:
        """See ``QueueStore``."""
        return await self.store.queue_lease(queue_id, record, until, due_by=due_by)

    async def queue_settle(self, queue_id: str, record: bytes | None,
                           next_attempt: float = 0.0) -> bool:
        """See ``QueueStore``."""
        if record is None:
            return await self.store.queue_remove(queue_id)
        try:
            await self.store.queue_put(queue_id, record, next_attempt, keep_hold=True)
        except NotFound:  # deleted by an administrator meanwhile
            return False
        return True

    async def queue_reschedule(self, queue_ids: Sequence[str], next_attempt: float, *,
                               only_later: bool = True) -> list[str]:
        """See ``QueueStore``."""
        return await self.store.queue_reschedule(queue_ids, next_attempt,
                                                 only_later=only_later)

    async def wait_for_queue_change(self) -> None:
        """See ``QueueStore``."""
        await self.store.wait_for_queue_change()

    async def get_blob(self, blob_id: bytes) -> bytes:
        """See ``QueueStore``."""
        return self.store.get_blob(blob_id)
