"""Checking a login against the accounts in the store.

Shared by SMTP AUTH (RFC 4954; ``smtp.handler.SmtpHooks.authenticate``, wired in
``app.py``) and IMAP LOGIN/AUTHENTICATE (RFC 3501 §6.2.2, §6.2.3): both call
``Authenticator.authenticate`` of the process's ``Services``.

One login, in order:

1. read the account record (one LMDB read: current across processes);
   missing or disabled: verify against a dummy hash, so the time taken
   does not tell which addresses exist, and fail;
2. the credential cache (``auth.cache``): a hit answers at once;
3. argon2id on the bounded pool (``auth.passwords.Hasher``);
4. on success, when the stored hash was made with other parameters than the
   configured ones, hash the password again and store it (compare-and-set,
   committed and synced before the login answers) — RFC 9106 §4 leaves
   parameter upgrades to the application; this is the only moment the
   password is at hand;
5. when the account has no SCRAM keys (set before they existed) or has them
   with another iteration count than ``[auth] scram_iterations``, make them
   from the password (PBKDF2 on the pool) and store them, compare-and-set
   on the hash like the rehash, committed and synced before the login
   answers (``auth.scram``);
6. remember the success in the cache.

Failed-login throttling (``auth.throttle``, ``counters/``) is the protocol
front ends' business and unchanged.
"""

from __future__ import annotations

import secrets
from typing import Protocol

import structlog

from mailserver.auth.cache import CredentialCache
from mailserver.auth.passwords import Hasher, verify_async
from mailserver.auth.scram import make_keys
from mailserver.errors import MailserverError
from mailserver.store.model import Account, ScramKeys
from mailserver.store.store import Store


class Accounts(Protocol):
    """What logins need of the directory (``store.api.Directory``): coroutines,
    a local read on LMDB, a round trip on PostgreSQL."""

    async def get_account(self, address: str) -> Account | None:
        """The account of ``address`` (any case), None."""
        ...

    async def rehash_password(self, address: str, old_hash: str, new_hash: str) -> bool:
        """Replace ``old_hash`` by ``new_hash`` unless it changed meanwhile."""
        ...

    async def set_scram_keys(self, address: str, password_hash: str, scram: ScramKeys) -> bool:
        """Store SCRAM keys unless the hash changed meanwhile."""
        ...

log = structlog.get_logger("mailserver.auth")

# A valid hash of a random password: verifying against it when the account does
# not exist costs the same time as a real check, so timing does not reveal
# which addresses exist.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$"
    "m2rQ0Av3CC5xkQ9G9T2zmWGl1mIhC3xSMRuj6uH1kPQ"
)


class Authenticator:
    """Logins against ``store``'s accounts (see the module docstring).

    ``hasher``: the configured parameters and pool; ``cache``: verified
    credentials (its ``stats`` are the hit/miss counters for metrics);
    ``scram_iterations``: the PBKDF2 count of SCRAM keys made at login
    (None: none are made).
    """

    def __init__(self, store: Accounts, hasher: Hasher, cache: CredentialCache,
                 scram_iterations: int | None = None) -> None:
        self.store = store
        self.hasher = hasher
        self.cache = cache
        self.scram_iterations = scram_iterations
        self._dummy: str | None = None

    async def authenticate(self, username: str, password: str) -> str | None:
        """The account address for a correct ``username``/``password``, else None.

        ``username`` is the account address (case-insensitive).  Never raises
        for bad credentials; a failed rehash is logged, not raised.
        """
        account = await self.store.get_account(username.strip())
        if account is None or account.disabled:
            await self.hasher.verify_async(await self._dummy_hash(), password)
            return None
        address, stored = account.address, account.password_hash
        if self.cache.check(address, stored, password):
            await self._scram_keys(account, stored, password)
            return address
        if not await self.hasher.verify_async(stored, password):
            return None
        if self.hasher.needs_rehash(stored):
            stored = await self._rehash(address, stored, password)
        await self._scram_keys(account, stored, password)
        self.cache.remember(address, stored, password)
        return address

    async def _scram_keys(self, account: Account, stored: str, password: str) -> None:
        """Make and store the account's SCRAM keys when it lacks them (or they
        have another iteration count): the password is at hand only now."""
        iterations = self.scram_iterations
        keys = account.scram
        if iterations is None or (keys is not None and keys.iterations == iterations):
            return
        fresh = await self.hasher.run_async(make_keys, password, iterations)
        if fresh is None:  # SASLprep refuses the password: no SCRAM for it
            return
        try:
            if await self.store.set_scram_keys(account.address, stored, fresh):
                log.info("scram_keys_made", user=account.address, iterations=iterations)
        except MailserverError as exc:
            log.warning("scram_keys_failed", user=account.address, error=str(exc))

    async def _rehash(self, address: str, stored: str, password: str) -> str:
        """The hash to remember: the new one once stored, else the old one."""
        fresh = await self.hasher.hash_async(password)
        try:
            replaced = await self.store.rehash_password(address, stored, fresh)
        except MailserverError as exc:
            log.warning("password_rehash_failed", user=address, error=str(exc))
            return stored
        if not replaced:  # the password was changed meanwhile: nothing to remember
            return stored
        log.info("password_rehashed", user=address)
        return fresh

    async def _dummy_hash(self) -> str:
        # Made once with the configured parameters, so a missing account costs
        # what a present one does.
        if self._dummy is None:
            self._dummy = await self.hasher.hash_async(secrets.token_urlsafe(16))
        return self._dummy

    def close(self) -> None:
        """Stop the hashing pool (a stopping server)."""
        self.hasher.close()


async def authenticate(store: Store, username: str, password: str) -> str | None:
    """An uncached one-off check with the default parameters, no rehash (tests,
    tools): the account address for correct credentials, else None."""
    account = store.get_account(username.strip())
    if account is None or account.disabled:
        await verify_async(_DUMMY_HASH, password)
        return None
    if await verify_async(account.password_hash, password):
        return account.address
    return None
