"""``postmaster`` for every local domain (RFC 5321 §4.5.1), without an alias per domain.

RFC 5321 §4.5.1: an SMTP server MUST accept mail to ``postmaster`` (with or
without a domain; the handler gives the bare form our first domain) and
``postmaster@`` each domain it serves.  The directory answers first, so an
account or alias of that name (or a catch-all) wins; when it knows nobody,
the address reaches the configured account (``checks.postmaster``) or, when
none is configured, the first account (by address) of the first configured
domain.  The local part is compared case-insensitively (§4.5.1: any case).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mailserver.store.directory import RecipientStatus
from mailserver.store.model import Account


class Directory(Protocol):
    """The store's directory reads this wrapper needs (``store.api.Directory``:
    coroutines, a local read on LMDB, a round trip on PostgreSQL)."""

    async def recipient_status(self, address: str) -> RecipientStatus:
        """The directory's answer for one forward-path (``store.RecipientStatus``)."""
        ...

    async def recipient_account(self, address: str) -> str | None:
        """The account ``address`` delivers to, or None."""
        ...

    async def list_accounts(self, domain: str | None = None) -> Sequence[Account]:
        """Accounts by address, only those of ``domain`` if given."""
        ...


class PostmasterDirectory:
    """``recipient_status``/``recipient_account`` of ``store``, with postmaster
    resolved as the module doc says.  ``account``: the configured target ("": none);
    ``first_domain``: where the default target is looked for."""

    __slots__ = ("store", "account", "first_domain")

    def __init__(self, store: Directory, *, account: str, first_domain: str | None) -> None:
        self.store = store
        self.account = account.lower()
        self.first_domain = first_domain

    async def postmaster(self) -> str | None:
        """The account postmaster mail reaches when nobody else claims it, or None."""
        if self.account:
            return await self.store.recipient_account(self.account)
        if self.first_domain is None:
            return None
        accounts = await self.store.list_accounts(self.first_domain)
        return accounts[0].address if accounts else None

    async def recipient_status(self, address: str) -> RecipientStatus:
        """The store's answer, with postmaster@<local domain> reaching the
        postmaster account when no account or alias of that name exists."""
        status = await self.store.recipient_status(address)
        if status.account is not None or not status.local_domain:
            return status
        if address.rpartition("@")[0].lower() != "postmaster":
            return status
        target = await self.postmaster()
        if target is None:
            return status
        return RecipientStatus(local_domain=True, account=target,
                               full=(await self.store.recipient_status(target)).full)

    async def recipient_account(self, address: str) -> str | None:
        """As ``recipient_status``, the account only (None: not deliverable here)."""
        account = await self.store.recipient_account(address)
        if account is not None or address.rpartition("@")[0].lower() != "postmaster":
            return account
        if not (await self.store.recipient_status(address)).local_domain:
            return None
        return await self.postmaster()
