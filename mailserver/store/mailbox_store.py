"""The mailbox part of ``Store``: list, look up, create, delete, rename,
subscribe (RFC 3501 §6.3), and wait for a mailbox to change.

The writes are requests of ``mailboxes.py``, run by the writer.
"""

from __future__ import annotations

from mailserver.errors import InvalidName
from mailserver.store import keys, mailboxes, tx
from mailserver.store.base import StoreBase
from mailserver.store.model import MailboxInfo
from mailserver.store.names import normalize_address, normalize_mailbox


class MailboxStore(StoreBase):
    """Mailboxes of accounts (see the module docstring)."""

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

    def gone_subscriptions(self, account: str) -> list[str]:
        """Subscribed names whose mailbox no longer exists (RFC 3501 §6.3.6;
        LIST shows them ``\\NonExistent``, RFC 5258 §3.1), sorted.  An
        unknown account has none."""
        try:
            account = normalize_address(account)
        except InvalidName:
            return []
        prefix = keys.gone_sub_prefix(account)
        out = []
        with self._read() as txn:
            cur = txn.cursor(db=self._dbs.meta)
            if cur.set_range(prefix):
                for k in cur.iternext(values=False):
                    k = bytes(k)
                    if not k.startswith(prefix):
                        break
                    out.append(k[len(prefix):].decode())
        out.sort()
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
