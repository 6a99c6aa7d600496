"""The directory part of ``Store``: domains, accounts, aliases, and which
account a forward-path delivers to.

Addresses are compared case-insensitively in the domain and case-insensitively
in the local part too (as Dovecot and Postfix users expect); accounts are keyed
by the lower-cased address.  The writes are requests of ``directory_writes.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailserver.errors import InvalidName
from mailserver.store import codec, directory_writes, keys, tx
from mailserver.store.base import StoreBase
from mailserver.store.model import Account, Alias, Domain, ScramKeys, decode_targets
from mailserver.store.names import domain_of, normalize_address, normalize_domain


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """``Store.recipient_status``'s answer for one forward-path: what RCPT needs.

    An alias of several targets gives every account in ``accounts`` (the
    first also in ``account``) and its remote targets in ``forwards``.
    """

    local_domain: bool
    account: str | None  # None: no local account (or not a local domain)
    full: bool = False  # the account is at or over its quota (one account only)
    accounts: tuple[str, ...] = ()  # every account reached (an alias's several)
    forwards: tuple[str, ...] = ()  # remote addresses an alias forwards to

    @property
    def known(self) -> bool:
        """Someone takes the mail: an account, or an alias's forward."""
        return self.account is not None or bool(self.forwards)


_NOT_LOCAL = RecipientStatus(local_domain=False, account=None)
_UNKNOWN = RecipientStatus(local_domain=True, account=None)


class DirectoryStore(StoreBase):
    """Domains, accounts and aliases (see the module docstring)."""

    async def add_domain(self, name: str) -> Domain:
        """Add a local domain.  Raises AlreadyExists, InvalidName."""
        return await self._writer.submit(directory_writes.add_domain, name)

    async def delete_domain(self, name: str) -> None:
        """Remove a domain and its aliases.  DomainNotFound; Cannot if accounts remain."""
        await self._writer.submit(directory_writes.delete_domain, name)

    def list_domains(self) -> list[Domain]:
        """Every local domain, in key (byte) order."""
        with self._read() as txn:
            return [Domain(k.decode()) for k, _ in txn.cursor(db=self._dbs.domains)]

    def is_local_domain(self, name: str) -> bool:
        """True when ``name`` is one of our domains (any case); False for an invalid name."""
        try:
            key = normalize_domain(name).encode()
        except InvalidName:
            return False
        with self._read() as txn:
            return txn.get(key, db=self._dbs.domains) is not None

    async def add_account(self, address: str, password_hash: str, *, quota: int = 0,
                          scram: ScramKeys | None = None) -> Account:
        """Create an account (its domain must exist) with ``DEFAULT_MAILBOXES``, subscribed.

        Raises DomainNotFound, AlreadyExists, InvalidName.  ``quota`` in octets, 0 = none;
        ``scram``: the SCRAM keys of the same password (None: SCRAM fails until made).
        """
        return await self._writer.submit(directory_writes.add_account, address, password_hash,
                                         quota, scram)

    async def delete_account(self, address: str) -> None:
        """Remove the account, its mailboxes and messages (dropping blob references).

        Aliases pointing at it are removed too.  Raises AccountNotFound.
        """
        await self._writer.submit(directory_writes.delete_account, address)

    async def set_password_hash(self, address: str, password_hash: str,
                                scram: ScramKeys | None = None) -> None:
        """Replace the argon2 PHC string and the SCRAM keys (None: the account
        has none until they are made).  Raises AccountNotFound."""
        await self._writer.submit(directory_writes.set_password_hash, address, password_hash,
                                  scram)

    async def rehash_password(self, address: str, old_hash: str, new_hash: str) -> bool:
        """Replace the PHC string ``old_hash`` by ``new_hash`` (same password, new
        parameters) unless it changed meanwhile; True when replaced.  Committed
        and synced when it returns, like every write."""
        return await self._writer.submit(directory_writes.rehash_password, address,
                                         old_hash, new_hash)

    async def set_scram_keys(self, address: str, password_hash: str, scram: ScramKeys) -> bool:
        """Store SCRAM keys made from the password just verified against
        ``password_hash``, unless the hash changed meanwhile; True when stored.
        Committed and synced when it returns."""
        return await self._writer.submit(directory_writes.set_scram_keys, address,
                                         password_hash, scram)

    async def set_disabled(self, address: str, disabled: bool) -> None:
        """Disable (no login; mail still delivered) or enable an account.
        Raises AccountNotFound."""
        await self._writer.submit(directory_writes.set_disabled, address, disabled)

    async def set_quota(self, address: str, quota: int) -> None:
        """Set the quota in octets (0 = unlimited).  Raises AccountNotFound."""
        await self._writer.submit(directory_writes.set_quota, address, quota)

    def get_account(self, address: str) -> Account | None:
        """The account of ``address`` (any case), or None (also for an invalid address)."""
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

    async def add_alias(self, address: str, targets: str | list[str]) -> Alias:
        """Alias ``local@domain`` or catch-all ``@domain`` (a local domain) to
        accounts and remote addresses (``directory_writes.add_alias``).

        Raises DomainNotFound, AccountNotFound (a local target), AlreadyExists,
        InvalidName, ValueError (no target, too many).
        """
        found = [targets] if isinstance(targets, str) else list(targets)
        return await self._writer.submit(directory_writes.add_alias, address, found)

    async def delete_alias(self, address: str) -> None:
        """Raises NotFound."""
        await self._writer.submit(directory_writes.delete_alias, address)

    def list_aliases(self, domain: str | None = None) -> list[Alias]:
        """The aliases (catch-alls included), those of ``domain`` only when given; key order."""
        dom = None if domain is None else domain.strip().lower()
        out = []
        with self._read() as txn:
            for k, v in txn.cursor(db=self._dbs.aliases):
                address = k.decode()
                if dom is None or domain_of(address) == dom:
                    out.append(Alias(address, decode_targets(v)))
        return out

    def has_sent_to(self, account: str, recipient: str) -> bool:
        """Whether ``account`` has sent mail to ``recipient`` before (the
        first-time recipient limit, ``checks/limits.py``)."""
        key = keys.sent_to_key(account, recipient)
        if len(key) > 511:
            return False
        with self._read() as txn:
            return txn.get(key, db=self._dbs.meta) is not None

    async def remember_sent(self, account: str, recipients: Sequence[str]) -> None:
        """Mark ``recipients`` as sent to by ``account`` (one synced commit)."""
        if recipients:
            await self._writer.submit(directory_writes.remember_sent, account, list(recipients))

    def recipient_account(self, address: str) -> str | None:
        """The account a forward-path address delivers to, or ``None``.

        Order: exact account; alias; ``local+tag@domain`` with the ``+tag``
        removed (account, then alias); catch-all alias ``@domain``.
        """
        try:
            address = normalize_address(address)
        except InvalidName:
            return None
        with self._read() as txn:
            return self._account_in(txn, address)

    def recipient_status(self, address: str) -> RecipientStatus:
        """What RCPT needs to know of ``local@domain`` (domain in A-labels), in
        one read transaction: ``is_local_domain``, ``recipient_account`` and
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
            found = None if normalized is None else self._targets_in(txn, normalized)
            if found is None:
                return _UNKNOWN
            accounts, forwards = found
            if len(accounts) != 1 or forwards:
                return RecipientStatus(local_domain=True, account=accounts[0] if accounts
                                       else None, accounts=accounts, forwards=forwards)
            record = tx.get_account(txn, self._dbs, accounts[0])
        full = record is not None and bool(record.quota) and record.used >= record.quota
        return RecipientStatus(local_domain=True, account=accounts[0], full=full,
                               accounts=accounts)

    def _account_in(self, txn: Any, address: str) -> str | None:
        """``recipient_account`` of a normalized address in ``txn``: the first
        account it reaches."""
        found = self._targets_in(txn, address)
        return found[0][0] if found is not None and found[0] else None

    def _targets_in(self, txn: Any, address: str
                    ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """``(accounts, remote addresses)`` a normalized address reaches in
        ``txn``, None when nobody (order: exact account; alias;
        ``local+tag`` without the tag, account then alias; catch-all)."""
        local, _, domain = address.rpartition("@")
        candidates = [address]
        base = local.split("+", 1)[0]
        if base and base != local:
            candidates.append(f"{base}@{domain}")
        dbs = self._dbs
        for cand in candidates:
            if txn.get(cand.encode(), db=dbs.accounts) is not None:
                return (cand,), ()
            found = self._alias_in(txn, cand)
            if found is not None:
                return found
        return self._alias_in(txn, "@" + domain)

    def _alias_in(self, txn: Any, alias: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        value = txn.get(alias.encode(), db=self._dbs.aliases)
        if value is None:
            return None
        accounts, forwards = [], []
        for target in decode_targets(value):
            if txn.get(target.encode(), db=self._dbs.accounts) is not None:
                accounts.append(target)
            elif txn.get(domain_of(target).encode(), db=self._dbs.domains) is None:
                forwards.append(target)
            # else: an account of ours deleted since (its alias entry went with it)
        if not accounts and not forwards:
            return None
        return tuple(accounts), tuple(forwards)
