"""Write requests on domains, accounts and aliases, run by the writer thread
(``Store`` methods of ``directory.py`` submit them; see ``writer.py``)."""

from __future__ import annotations

from dataclasses import replace

from mailserver.errors import AccountNotFound, AlreadyExists, Cannot, DomainNotFound, NotFound
from mailserver.store import junk_writes, keys, tx
from mailserver.store.mailboxes import create_defaults
from mailserver.store.messages import purge_mailbox
from mailserver.store.model import (
    MAX_ALIAS_TARGETS,
    Account,
    Alias,
    Domain,
    ScramKeys,
    decode_targets,
    encode_targets,
)
from mailserver.store.names import (
    domain_of,
    normalize_address,
    normalize_alias,
    normalize_domain,
)
from mailserver.store.writer import WriteCtx


def _require_domain(ctx: WriteCtx, domain: str) -> None:
    if ctx.txn.get(domain.encode(), db=ctx.dbs.domains) is None:
        raise DomainNotFound(f"no local domain {domain}")


def add_domain(ctx: WriteCtx, name: str) -> Domain:
    """Add a local domain (normalised).  Raises InvalidName, AlreadyExists."""
    name = normalize_domain(name)
    if not ctx.txn.put(name.encode(), b"", db=ctx.dbs.domains, overwrite=False):
        raise AlreadyExists(f"domain {name} already exists")
    return Domain(name)


def delete_domain(ctx: WriteCtx, name: str) -> None:
    """Cannot while accounts remain; the domain's aliases go with it."""
    name = normalize_domain(name)
    _require_domain(ctx, name)
    suffix = "@" + name
    for key, _ in ctx.txn.cursor(db=ctx.dbs.accounts):
        if bytes(key).decode().endswith(suffix):
            raise Cannot(f"domain {name} still has accounts")
    doomed = [
        bytes(k) for k, _ in ctx.txn.cursor(db=ctx.dbs.aliases) if bytes(k).decode().endswith(suffix)
    ]
    for k in doomed:
        ctx.txn.delete(k, db=ctx.dbs.aliases)
    ctx.txn.delete(name.encode(), db=ctx.dbs.domains)


def add_account(ctx: WriteCtx, address: str, password_hash: str, quota: int,
                scram: ScramKeys | None = None) -> Account:
    """Create an account with its default mailboxes; ``quota`` in bytes, 0 unlimited;
    ``scram``: the SCRAM keys of the same password, if made.

    Raises InvalidName, ValueError (negative quota), DomainNotFound, AlreadyExists.
    """
    address = normalize_address(address)
    if quota < 0:
        raise ValueError("quota must be >= 0")
    _require_domain(ctx, domain_of(address))
    if tx.get_account(ctx.txn, ctx.dbs, address) is not None:
        raise AlreadyExists(f"account {address} already exists")
    acc = Account(address, password_hash, quota, 0, scram=scram)
    tx.put_account(ctx.txn, ctx.dbs, acc)
    create_defaults(ctx, address)
    return acc


def delete_account(ctx: WriteCtx, address: str) -> None:
    """The account, its mailboxes, messages (blob references) and aliases pointing at it."""
    address = normalize_address(address)
    txn, dbs = ctx.txn, ctx.dbs
    tx.require_account(txn, dbs, address)
    for name, mbid in list(tx.iter_account_mailboxes(txn, dbs, address)):
        mb = tx.mailbox_by_id(txn, dbs, mbid)
        if mb is not None:
            purge_mailbox(ctx, mb, keep_log=False)
            txn.delete(keys.mailbox_key(mbid), db=dbs.mailboxes)
        txn.delete(keys.mbname_key(address, name), db=dbs.mbnames)
    tx.delete_prefix(txn, dbs.meta, keys.gone_sub_prefix(address))
    tx.delete_prefix(txn, dbs.meta, keys.sent_to_key(address, ""))  # first-time marks
    junk_writes.reset(ctx, address)  # its own junk model (the global one keeps its share)
    # Aliases lose the account as a target; those left without one go.
    changed = []
    for k, v in txn.cursor(db=dbs.aliases):
        targets = decode_targets(v)
        if address in targets:
            changed.append((bytes(k), tuple(t for t in targets if t != address)))
    for k, rest in changed:
        if rest:
            txn.put(k, encode_targets(rest), db=dbs.aliases)
        else:
            txn.delete(k, db=dbs.aliases)
    txn.delete(address.encode(), db=dbs.accounts)


def set_password_hash(ctx: WriteCtx, address: str, password_hash: str,
                      scram: ScramKeys | None = None) -> None:
    """Replace the account's password hash (argon2id PHC string) and SCRAM keys
    (None: none; the old ones belong to the old password).  Raises AccountNotFound."""
    acc = tx.require_account(ctx.txn, ctx.dbs, normalize_address(address))
    tx.put_account(ctx.txn, ctx.dbs, replace(acc, password_hash=password_hash, scram=scram))


def rehash_password(ctx: WriteCtx, address: str, old_hash: str, new_hash: str) -> bool:
    """Replace the hash only if it is still ``old_hash`` (a password set meanwhile wins)."""
    acc = tx.get_account(ctx.txn, ctx.dbs, normalize_address(address))
    if acc is None or acc.password_hash != old_hash:
        return False
    tx.put_account(ctx.txn, ctx.dbs, replace(acc, password_hash=new_hash))
    return True


def set_scram_keys(ctx: WriteCtx, address: str, password_hash: str, scram: ScramKeys) -> bool:
    """Store SCRAM keys made from the password that matched ``password_hash``,
    only if the hash is still that one (a password set meanwhile wins)."""
    acc = tx.get_account(ctx.txn, ctx.dbs, normalize_address(address))
    if acc is None or acc.password_hash != password_hash:
        return False
    tx.put_account(ctx.txn, ctx.dbs, replace(acc, scram=scram))
    return True


def set_disabled(ctx: WriteCtx, address: str, disabled: bool) -> None:
    """Mark the account disabled (no login) or enabled.  Raises AccountNotFound."""
    acc = tx.require_account(ctx.txn, ctx.dbs, normalize_address(address))
    tx.put_account(ctx.txn, ctx.dbs, replace(acc, disabled=disabled))


def set_quota(ctx: WriteCtx, address: str, quota: int) -> None:
    """Set the account's quota in bytes (0: unlimited).  Raises ValueError, AccountNotFound."""
    if quota < 0:
        raise ValueError("quota must be >= 0")
    acc = tx.require_account(ctx.txn, ctx.dbs, normalize_address(address))
    tx.put_account(ctx.txn, ctx.dbs, replace(acc, quota=quota))


def add_alias(ctx: WriteCtx, address: str, targets: list[str]) -> Alias:
    """An alias ``local@domain`` or catch-all ``@domain`` of a local domain to
    ``targets``: accounts (an address of a local domain must be one) and
    addresses of other domains, forwarded to.  Duplicates are dropped.
    Raises InvalidName, DomainNotFound, AccountNotFound, AlreadyExists,
    ValueError (no target, or more than ``MAX_ALIAS_TARGETS``)."""
    address = normalize_alias(address)
    _require_domain(ctx, domain_of(address))
    found = list(dict.fromkeys(normalize_address(t) for t in targets))
    if not found or len(found) > MAX_ALIAS_TARGETS:
        raise ValueError(f"an alias needs 1 to {MAX_ALIAS_TARGETS} targets")
    for target in found:
        local_domain = ctx.txn.get(domain_of(target).encode(), db=ctx.dbs.domains) is not None
        if local_domain and tx.get_account(ctx.txn, ctx.dbs, target) is None:
            raise AccountNotFound(f"alias target {target} is not an account")
    if tx.get_account(ctx.txn, ctx.dbs, address) is not None:
        raise AlreadyExists(f"{address} is an account")
    if not ctx.txn.put(address.encode(), encode_targets(found), db=ctx.dbs.aliases,
                       overwrite=False):
        raise AlreadyExists(f"alias {address} already exists")
    return Alias(address, tuple(found))


def delete_alias(ctx: WriteCtx, address: str) -> None:
    """Remove an alias (``local@domain`` or catch-all ``@domain``).

    Raises InvalidName, NotFound.
    """
    address = normalize_alias(address)
    if not ctx.txn.delete(address.encode(), db=ctx.dbs.aliases):
        raise NotFound(f"no alias {address}")



def remember_sent(ctx: WriteCtx, account: str, recipients: list[str]) -> None:
    """Mark that ``account`` has sent mail to each of ``recipients`` (keys
    over LMDB's 511-octet limit are skipped: such an address is always new)."""
    for rcpt in recipients:
        key = keys.sent_to_key(account, rcpt)
        if len(key) <= 511:
            ctx.txn.put(key, b"", db=ctx.dbs.meta)
