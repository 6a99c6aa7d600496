"""The directory of the PostgreSQL store (issue #17 §1): ``store.api.Directory``
over schema v1's ``domains``, ``accounts``, ``aliases`` and ``mailboxes``.

The same rules as the LMDB directory (``store/directory.py``,
``store/directory_writes.py``): names normalised the same way (``store.names``),
the same errors for the same mistakes, the same delivery order for a
forward-path (account; alias; ``local+tag`` without the tag, account then
alias; catch-all).  Writes go through the node's group-commit writer
(``PgWriter``); reads through a connection pool.  ``Account.used`` is the
sum of the account's mailbox sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailserver.errors import (
    AccountNotFound,
    AlreadyExists,
    Cannot,
    DomainNotFound,
    InvalidName,
    NotFound,
)
from mailserver.store.api import Directory
from mailserver.store.codec import decode_scram, encode_scram
from mailserver.store.directory import RecipientStatus
from mailserver.store.model import (
    DEFAULT_MAILBOXES,
    MAX_ALIAS_TARGETS,
    Account,
    Alias,
    Domain,
    ScramKeys,
)
from mailserver.store.names import (
    domain_of,
    normalize_address,
    normalize_alias,
    normalize_domain,
)
from mailserver.store.pg.writer import PgWriter

_ACCOUNT = ("SELECT a.address, a.password_hash, a.quota, a.disabled, a.scram, "
            "coalesce((SELECT sum(size) FROM mailboxes m WHERE m.account = a.address), 0) "
            "AS used FROM accounts a")


def _account(row: Any) -> Account:
    scram = row["scram"]
    return Account(row["address"], row["password_hash"], int(row["quota"]), int(row["used"]),
                   disabled=bool(row["disabled"]),
                   scram=None if scram is None else decode_scram(bytes(scram)))


class PgDirectory:
    """``Directory`` on PostgreSQL: ``writer`` commits, ``pool`` (asyncpg) reads."""

    def __init__(self, writer: PgWriter, pool: Any) -> None:
        self._writer = writer
        self._pool = pool

    # -- domains ------------------------------------------------------------------

    async def add_domain(self, name: str) -> Domain:
        """See ``Directory``."""
        name = normalize_domain(name)

        async def write(conn: Any) -> None:
            done = await conn.execute("INSERT INTO domains VALUES ($1) ON CONFLICT DO NOTHING",
                                      name)
            if done.endswith(" 0"):
                raise AlreadyExists(f"domain {name} already exists")
        await self._writer.submit(write)
        return Domain(name)

    async def delete_domain(self, name: str) -> None:
        """See ``Directory``."""
        name = normalize_domain(name)

        async def write(conn: Any) -> None:
            if await conn.fetchval("SELECT 1 FROM domains WHERE name = $1 FOR UPDATE",
                                   name) is None:
                raise DomainNotFound(f"no domain {name}")
            if await conn.fetchval("SELECT 1 FROM accounts WHERE domain = $1 LIMIT 1", name):
                raise Cannot(f"domain {name} still has accounts")
            await conn.execute("DELETE FROM aliases WHERE address LIKE $1", "%@" + name)
            await conn.execute("DELETE FROM domains WHERE name = $1", name)
        await self._writer.submit(write)

    async def list_domains(self) -> list[Domain]:
        """See ``Directory``."""
        rows = await self._pool.fetch("SELECT name FROM domains ORDER BY name COLLATE \"C\"")
        return [Domain(r["name"]) for r in rows]

    async def is_local_domain(self, name: str) -> bool:
        """See ``Directory``."""
        try:
            name = normalize_domain(name)
        except InvalidName:
            return False
        return bool(await self._pool.fetchval("SELECT 1 FROM domains WHERE name = $1",
                                              name) == 1)

    # -- accounts -----------------------------------------------------------------

    async def add_account(self, address: str, password_hash: str, *,
                          quota: int = 0, scram: ScramKeys | None = None) -> Account:
        """See ``Directory``."""
        address = normalize_address(address)
        if quota < 0:
            raise ValueError("quota must be >= 0")
        domain = domain_of(address)

        async def write(conn: Any) -> None:
            if await conn.fetchval("SELECT 1 FROM domains WHERE name = $1 FOR SHARE",
                                   domain) is None:
                raise DomainNotFound(f"no domain {domain}")
            done = await conn.execute(
                "INSERT INTO accounts (address, domain, password_hash, quota, scram) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                address, domain, password_hash, quota,
                None if scram is None else encode_scram(scram))
            if done.endswith(" 0"):
                raise AlreadyExists(f"account {address} already exists")
            await conn.executemany(
                "INSERT INTO mailboxes (account, name, uidvalidity, special_use) "
                "VALUES ($1, $2, new_uidvalidity(), $3)",
                [(address, name, special) for name, special in DEFAULT_MAILBOXES])
        await self._writer.submit(write)
        return Account(address, password_hash, quota, 0, scram=scram)

    async def set_password_hash(self, address: str, password_hash: str,
                                scram: ScramKeys | None = None) -> None:
        """See ``Directory``."""
        address = normalize_address(address)

        async def write(conn: Any) -> None:
            done = await conn.execute(
                "UPDATE accounts SET password_hash = $2, scram = $3 WHERE address = $1",
                address, password_hash, None if scram is None else encode_scram(scram))
            if done.endswith(" 0"):
                raise AccountNotFound(f"no account {address}")
        await self._writer.submit(write)

    async def delete_account(self, address: str) -> None:
        """See ``Directory``."""
        address = normalize_address(address)

        async def write(conn: Any) -> None:
            if await conn.fetchval("DELETE FROM accounts WHERE address = $1 RETURNING 1",
                                   address) is None:
                raise AccountNotFound(f"no account {address}")
            # Mailboxes and messages go by ON DELETE CASCADE; aliases lose the target.
            await conn.execute("UPDATE aliases SET targets = array_remove(targets, $1) "
                               "WHERE $1 = ANY (targets)", address)
            await conn.execute("DELETE FROM aliases WHERE cardinality(targets) = 0")
        await self._writer.submit(write)

    async def get_account(self, address: str) -> Account | None:
        """See ``Directory``."""
        try:
            address = normalize_address(address)
        except InvalidName:
            return None
        row = await self._pool.fetchrow(_ACCOUNT + " WHERE a.address = $1", address)
        return None if row is None else _account(row)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        """See ``Directory``."""
        if domain is None:
            rows = await self._pool.fetch(_ACCOUNT + " ORDER BY a.address COLLATE \"C\"")
        else:
            rows = await self._pool.fetch(
                _ACCOUNT + " WHERE a.domain = $1 ORDER BY a.address COLLATE \"C\"",
                domain.strip().lower())
        return [_account(r) for r in rows]

    async def _update(self, address: str, column: str, value: Any) -> None:
        address = normalize_address(address)

        async def write(conn: Any) -> None:
            done = await conn.execute(f"UPDATE accounts SET {column} = $2 WHERE address = $1",
                                      address, value)
            if done.endswith(" 0"):
                raise AccountNotFound(f"no account {address}")
        await self._writer.submit(write)

    async def _replace_if(self, address: str, old_hash: str, column: str, value: Any) -> bool:
        """Set ``column`` only while the password hash is still ``old_hash`` (a
        password set meanwhile wins); True when set."""
        try:
            address = normalize_address(address)
        except InvalidName:
            return False

        async def write(conn: Any) -> bool:
            done = await conn.execute(
                f"UPDATE accounts SET {column} = $3 WHERE address = $1 AND password_hash = $2",
                address, old_hash, value)
            return not done.endswith(" 0")
        return bool(await self._writer.submit(write))

    async def rehash_password(self, address: str, old_hash: str, new_hash: str) -> bool:
        """See ``Directory``."""
        return await self._replace_if(address, old_hash, "password_hash", new_hash)

    async def set_scram_keys(self, address: str, password_hash: str, scram: ScramKeys) -> bool:
        """See ``Directory``."""
        return await self._replace_if(address, password_hash, "scram", encode_scram(scram))

    async def set_disabled(self, address: str, disabled: bool) -> None:
        """See ``Directory``."""
        await self._update(address, "disabled", disabled)

    async def set_quota(self, address: str, quota: int) -> None:
        """See ``Directory``."""
        if quota < 0:
            raise ValueError("quota must be >= 0")
        await self._update(address, "quota", quota)

    # -- aliases ------------------------------------------------------------------

    async def add_alias(self, address: str, targets: str | list[str]) -> Alias:
        """See ``Directory``."""
        address = normalize_alias(address)
        found = list(dict.fromkeys(normalize_address(t) for t in
                                   ([targets] if isinstance(targets, str) else targets)))
        if not found or len(found) > MAX_ALIAS_TARGETS:
            raise ValueError(f"an alias needs 1 to {MAX_ALIAS_TARGETS} targets")
        domain = domain_of(address)

        async def write(conn: Any) -> None:
            if await conn.fetchval("SELECT 1 FROM domains WHERE name = $1 FOR SHARE",
                                   domain) is None:
                raise DomainNotFound(f"no domain {domain}")
            for target in found:
                local = await conn.fetchval("SELECT 1 FROM domains WHERE name = $1",
                                            domain_of(target))
                if local and await conn.fetchval(
                        "SELECT 1 FROM accounts WHERE address = $1 FOR SHARE", target) is None:
                    raise AccountNotFound(f"alias target {target} is not an account")
            if await conn.fetchval("SELECT 1 FROM accounts WHERE address = $1", address):
                raise AlreadyExists(f"{address} is an account")
            done = await conn.execute(
                "INSERT INTO aliases VALUES ($1, $2) ON CONFLICT DO NOTHING", address, found)
            if done.endswith(" 0"):
                raise AlreadyExists(f"alias {address} already exists")
        await self._writer.submit(write)
        return Alias(address, tuple(found))

    async def delete_alias(self, address: str) -> None:
        """See ``Directory``."""
        address = normalize_alias(address)

        async def write(conn: Any) -> None:
            done = await conn.execute("DELETE FROM aliases WHERE address = $1", address)
            if done.endswith(" 0"):
                raise NotFound(f"no alias {address}")
        await self._writer.submit(write)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        """See ``Directory``."""
        dom = None if domain is None else domain.strip().lower()
        rows = await self._pool.fetch(
            "SELECT address, targets FROM aliases WHERE $1::text IS NULL "
            "OR split_part(address, '@', 2) = $1 ORDER BY address COLLATE \"C\"", dom)
        return [Alias(r["address"], tuple(r["targets"])) for r in rows]

    # -- delivery -----------------------------------------------------------------

    async def has_sent_to(self, account: str, recipient: str) -> bool:
        """See ``Directory``."""
        return bool(await self._pool.fetchval(
            "SELECT 1 FROM sent_to WHERE account = $1 AND recipient = $2",
            account.lower(), recipient.lower()))

    async def remember_sent(self, account: str, recipients: Sequence[str]) -> None:
        """See ``Directory``: nothing for an account that is gone."""
        if not recipients:
            return
        rows = [(account.lower(), r.lower()) for r in recipients]

        async def write(conn: Any) -> None:
            await conn.executemany(
                "INSERT INTO sent_to (account, recipient) SELECT $1, $2 WHERE EXISTS "
                "(SELECT 1 FROM accounts WHERE address = $1) ON CONFLICT DO NOTHING", rows)
        await self._writer.submit(write)

    async def recipient_account(self, address: str) -> str | None:
        """See ``Directory``: one read transaction."""
        try:
            normalized = normalize_address(address)
        except InvalidName:
            return None
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            found = await _targets(conn, normalized)
        return found[0][0] if found is not None and found[0] else None

    async def recipient_status(self, address: str) -> RecipientStatus:
        """See ``Directory``: one read transaction."""
        try:
            domain = normalize_domain(address.rpartition("@")[2])
        except InvalidName:
            return RecipientStatus(local_domain=False, account=None)
        try:
            normalized: str | None = normalize_address(address)
        except InvalidName:
            normalized = None
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            if await conn.fetchval("SELECT 1 FROM domains WHERE name = $1", domain) is None:
                return RecipientStatus(local_domain=False, account=None)
            found = None if normalized is None else await _targets(conn, normalized)
            if found is None:
                return RecipientStatus(local_domain=True, account=None)
            accounts, forwards = found
            if len(accounts) != 1 or forwards:
                return RecipientStatus(local_domain=True, account=accounts[0] if accounts
                                       else None, accounts=accounts, forwards=forwards)
            row = await conn.fetchrow(_ACCOUNT + " WHERE a.address = $1", accounts[0])
        full = row is not None and bool(row["quota"]) and row["used"] >= row["quota"]
        return RecipientStatus(local_domain=True, account=accounts[0], full=full,
                               accounts=accounts)


async def _targets(conn: Any, address: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    local, _, domain = address.rpartition("@")
    candidates = [address]
    base = local.split("+", 1)[0]
    if base and base != local:
        candidates.append(f"{base}@{domain}")
    for cand in candidates:
        if await conn.fetchval("SELECT 1 FROM accounts WHERE address = $1", cand):
            return (cand,), ()
        found = await _alias(conn, cand)
        if found is not None:
            return found
    return await _alias(conn, "@" + domain)


async def _alias(conn: Any, alias: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    targets = await conn.fetchval("SELECT targets FROM aliases WHERE address = $1", alias)
    if targets is None:
        return None
    accounts, forwards = [], []
    for target in targets:
        if await conn.fetchval("SELECT 1 FROM accounts WHERE address = $1", target):
            accounts.append(target)
        elif not await conn.fetchval("SELECT 1 FROM domains WHERE name = $1",
                                     domain_of(target)):
            forwards.append(target)
    if not accounts and not forwards:
        return None
    return tuple(accounts), tuple(forwards)


def as_directory(d: PgDirectory) -> Directory:
    """``d`` as the protocol (mypy checks that it meets it)."""
    return d
