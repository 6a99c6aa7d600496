"""The mail store's public face: accounts, mailboxes, messages, the change feed.

INTERFACE SPEC (agreed between the store, SMTP, IMAP and CLI owners).  Method
names, arguments and return types below are fixed; the bodies are the store
owner's.  All ``async`` methods that write return only after the LMDB
transaction holding the change has been committed *and synced* (group commit:
see ``writer.py``).  Reads are cheap memory-mapped LMDB reads; the short ones
are plain methods that can be called on the event loop.

Errors: ``mailserver.errors`` — ``MailboxNotFound``, ``AccountNotFound``,
``DomainNotFound``, ``AlreadyExists``, ``InvalidName``, ``QuotaExceeded``,
``Cannot``.  Everything else is a server fault.

Addresses are compared case-insensitively in the domain and case-insensitively
in the local part too (as Dovecot and Postfix users expect); accounts are keyed
by the lower-cased address.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from mailserver.store.model import (
    Account,
    Alias,
    Changes,
    Domain,
    MailboxInfo,
    MessageRecord,
    NewMessage,
)


class Store:
    """An open LMDB environment under ``data_dir / "store"``.

    One ``Store`` per process; several processes may open the same directory
    (LMDB serialises writers across processes; each process's change feed also
    hears commits made by the others).
    """

    @classmethod
    async def open(cls, data_dir: Path, *, map_size: int = 1 << 34) -> Store:
        """Open (creating if needed) the store; check the schema version.

        ``map_size`` is the LMDB map size in bytes (sparse on disk).
        Raises ``MailserverError`` on a schema version this code does not know.
        Must be called from the running event loop (the change feed binds to it).
        """
        raise NotImplementedError

    async def close(self) -> None:
        """Finish queued writes, stop the writer thread, close the environment."""
        raise NotImplementedError

    # -- domains, accounts, aliases ------------------------------------------------

    async def add_domain(self, name: str) -> Domain: ...
    async def delete_domain(self, name: str) -> None: ...  # Cannot if accounts remain
    def list_domains(self) -> list[Domain]: ...
    def is_local_domain(self, name: str) -> bool: ...

    async def add_account(self, address: str, password_hash: str, *, quota: int = 0) -> Account:
        """Create an account (its domain must exist) with ``DEFAULT_MAILBOXES``, subscribed."""
        raise NotImplementedError

    async def delete_account(self, address: str) -> None:
        """Remove the account, its mailboxes and messages (dropping blob references)."""
        raise NotImplementedError

    async def set_password_hash(self, address: str, password_hash: str) -> None: ...
    async def set_quota(self, address: str, quota: int) -> None: ...
    def get_account(self, address: str) -> Account | None: ...
    def list_accounts(self, domain: str | None = None) -> list[Account]: ...

    async def add_alias(self, address: str, target: str) -> Alias: ...
    async def delete_alias(self, address: str) -> None: ...
    def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    def resolve_recipient(self, address: str) -> str | None:
        """Map a forward-path address to an account address, or ``None``.

        Order: exact account; alias; ``local+tag@domain`` with the ``+tag``
        removed (account, then alias); catch-all alias ``@domain``.
        """
        raise NotImplementedError

    # -- mailboxes -----------------------------------------------------------------

    def list_mailboxes(self, account: str) -> list[MailboxInfo]:
        """All mailboxes of the account, sorted by name."""
        raise NotImplementedError

    def get_mailbox(self, account: str, name: str) -> MailboxInfo:
        """The mailbox; ``name`` "inbox" in any case means INBOX.  Raises MailboxNotFound."""
        raise NotImplementedError

    async def create_mailbox(
        self, account: str, name: str, *, special_use: str | None = None
    ) -> MailboxInfo:
        """Create it (RFC 3501 §6.3.3); missing parent levels are created too.

        UIDVALIDITY is new and never equal to one this name had before.
        Raises AlreadyExists, InvalidName (empty level, leading/trailing delimiter).
        """
        raise NotImplementedError

    async def delete_mailbox(self, account: str, name: str) -> None:
        """Delete it and its messages (RFC 3501 §6.3.4).  INBOX cannot be deleted (Cannot).

        A mailbox with children loses its messages and becomes ``noselect``
        (the name stays as a hierarchy level); deleting a ``noselect`` mailbox
        that still has children raises Cannot.  A later CREATE of a deleted
        name gets a new UIDVALIDITY.
        """
        raise NotImplementedError

    async def rename_mailbox(self, account: str, old: str, new: str) -> None:
        """RFC 3501 §6.3.5: renames children too; renaming INBOX moves its
        messages to the new mailbox and leaves INBOX empty (new UIDVALIDITY not needed).
        Raises MailboxNotFound, AlreadyExists, InvalidName."""
        raise NotImplementedError

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None: ...

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
        raise NotImplementedError

    def list_messages(self, mailbox_id: int) -> list[MessageRecord]:
        """Every message of the mailbox, ascending UID (what SELECT needs)."""
        raise NotImplementedError

    def get_messages(self, mailbox_id: int, uids: Iterable[int]) -> list[MessageRecord]:
        """The records of those UIDs that exist, ascending UID."""
        raise NotImplementedError

    def changes_since(self, mailbox_id: int, modseq: int) -> Changes:
        """Messages changed or added, and UIDs expunged, with MODSEQ > ``modseq``.

        Cost is proportional to the number of changes, not the mailbox size
        (a MODSEQ index).  Expunged UIDs are remembered for QRESYNC (RFC 7162).
        Raises MailboxNotFound if the mailbox was deleted.
        """
        raise NotImplementedError

    def get_blob(self, blob_id: bytes) -> bytes:
        """The shared bytes of a message (without its per-delivery prefix)."""
        raise NotImplementedError

    def get_facts(self, blob_id: bytes) -> bytes:
        """The opaque facts stored with the blob by ``deliver``/``append``."""
        raise NotImplementedError

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
        raise NotImplementedError

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
        """
        raise NotImplementedError

    async def expunge(self, mailbox_id: int, uids: Iterable[int] | None = None) -> list[int]:
        """Remove messages flagged ``\\Deleted`` (only those in ``uids`` if given).

        Returns the expunged UIDs, ascending.  Blob references drop; an
        unreferenced blob is deleted.
        """
        raise NotImplementedError

    async def copy(
        self, mailbox_id: int, uids: Iterable[int], dest_account: str, dest_mailbox: str
    ) -> tuple[int, list[tuple[int, int]]]:
        """RFC 3501 §6.4.7 COPY: returns ``(dest UIDVALIDITY, [(src uid, dest uid), ...])``.

        Flags and INTERNALDATE are kept; the blob is shared.  Raises MailboxNotFound
        (the IMAP layer answers ``NO [TRYCREATE]``), QuotaExceeded.
        """
        raise NotImplementedError

    async def move(
        self, mailbox_id: int, uids: Iterable[int], dest_account: str, dest_mailbox: str
    ) -> tuple[int, list[tuple[int, int]]]:
        """RFC 6851 MOVE: copy then expunge the sources, in one transaction."""
        raise NotImplementedError

    # -- change feed ---------------------------------------------------------------

    async def wait_for_change(self, mailbox_id: int, modseq: int) -> None:
        """Return as soon as the mailbox's HIGHESTMODSEQ is above ``modseq``.

        Returns at once if it already is.  Woken by commits of this process and
        of other processes on the same store; no polling.  Cancel to stop waiting.
        """
        raise NotImplementedError
