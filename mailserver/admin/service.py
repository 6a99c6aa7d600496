"""The admin service: domains, accounts, aliases, quotas, the outbound queue
and DKIM keys, behind one class every front end calls.

The command line (``mailserver.cli``) calls it today, the HTTP API will call
it tomorrow: the rules live here once (the password policy, what an address
is, which domains may be deleted, what may be published in DNS), the front
ends only parse arguments and print or serialise the ``views`` it returns.

Errors are our own (``mailserver.errors``): ``UserError`` subclasses for a
request that cannot be honoured (``InvalidName``, ``InvalidPassword``,
``DomainNotFound``, ``AccountNotFound``, ``NotFound``, ``AlreadyExists``,
``Cannot``), ``ConfigError`` when the configuration stands in the way,
``StoreNotFound`` from ``open_admin`` when the data directory holds no store.

Bearer tokens of the HTTP API (``create_token``, ``list_tokens``,
``revoke_token``, ``check_token``) live in a file of the data directory
(``admin.tokens``), hashed.

The queue actions (``list_queue``, ``queued``, ``retry``, ``flush``,
``delete_queued``) live here and nowhere else.  They work on the store's
queue tables, so they are safe while the daemon runs (LMDB serialises
writers across processes).  Given a ``QueueControl`` (the daemon's running
scheduler: an admin service built inside the daemon, the HTTP API's), they
also tell it: ``retry``/``flush`` wake it so that the message is looked at
now, and ``delete_queued`` first cancels a delivery round in flight for the
message.  Without one (the CLI, another process), ``retry``/``flush`` reach
the daemon's scheduler through the store's change feed (the commit that
reschedules wakes every process waiting on the queue), and a round in
progress for a deleted message finishes without bringing it back (its record
update finds it gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog

from mailserver import metrics
from mailserver.admin import backup as backup_mod
from mailserver.admin import dns_check, imapimport, mailio
from mailserver.admin import limits as limits_mod
from mailserver.admin.backup import BackupReport
from mailserver.admin.dns import dkim_record, domain_records
from mailserver.admin.dns_check import Verdict
from mailserver.admin.imapimport import Remote
from mailserver.admin.mailio import ProgressFn, TransferReport
from mailserver.admin.policy import (
    account_address,
    alias_address,
    check_password,
    check_public_hostname,
    dkim_selector,
    domain_name,
    new_domain_name,
)
from mailserver.admin.tokens import TokenFile
from mailserver.admin.views import (
    AccountInfo,
    AliasInfo,
    DkimKeyInfo,
    DnsRecord,
    DomainInfo,
    LimitCounter,
    MailboxView,
    QueueEntry,
    QueueRecipient,
    Runtime,
    StatusInfo,
    TokenInfo,
)
from mailserver.auth.passwords import hash_async
from mailserver.auth.scram import make_keys
from mailserver.config import Config
from mailserver.dkim import keys as dkim_keys
from mailserver.dns.resolver import DnsPythonResolver, Resolver
from mailserver.errors import (
    AccountNotFound,
    AlreadyExists,
    Cannot,
    DomainNotFound,
    InvalidName,
    NotFound,
    UserError,
)
from mailserver.junk.filter import JunkFilter, JunkVerdict
from mailserver.queue import model as queue_model
from mailserver.services import argon2_params, ensure_domains
from mailserver.store.api import Directory, LmdbDirectory
from mailserver.store.base import content_address
from mailserver.store.fsck import FsckReport
from mailserver.store.model import MAX_ALIAS_TARGETS, Account, Alias, ScramKeys
from mailserver.store.store import Store

log = structlog.get_logger("mailserver.admin")


class QueueControl(Protocol):
    """What the admin service may ask of a running queue scheduler (the
    daemon's ``QueueManager``), beyond the store's queue tables."""

    def wake(self) -> None:
        """Look at the schedule now: messages made due are started without
        waiting for the scheduler's next pass."""
        ...

    async def cancel(self, queue_id: str) -> None:
        """Stop the delivery round in flight for ``queue_id`` (none: nothing
        to do) and return once it has ended, so that the message can be
        deleted without a round writing it back or sending a DSN."""
        ...


def _alias(alias: Alias) -> AliasInfo:
    return AliasInfo(alias.address, alias.target, alias.targets)


def _account(account: Account) -> AccountInfo:
    return AccountInfo(account.address, account.quota, account.used, account.disabled)


#: Longest queue id looked up: ours have 17 characters, older ones 20; LMDB
#: refuses keys over 511 octets and empty ones.
_MAX_QUEUE_ID = 64


def _queue_id(queue_id: str) -> str:
    """``queue_id`` if it can name a queued message (1 to 64 printable ASCII
    characters); NotFound otherwise: no message has such an id."""
    if not (0 < len(queue_id) <= _MAX_QUEUE_ID and queue_id.isascii()
            and queue_id.isprintable() and " " not in queue_id):
        raise NotFound(f"no queued message {queue_id!r}")
    return queue_id


def _queue_entry(raw: bytes, queue_id: str | None = None,
                 held: set[str] | frozenset[str] = frozenset()) -> QueueEntry | None:
    """The record as a view, or None (logged) when it cannot be decoded
    (damaged, or written by a newer version)."""
    try:
        msg = queue_model.decode(raw)
    except Exception:  # json, unicode, key, type or value errors: all "unreadable"
        log.warning("queue_record_unreadable", queue_id=queue_id, size=len(raw))
        return None
    return QueueEntry(
        id=msg.id, sender=msg.reverse_path, created=msg.created, size=msg.size,
        attempts=msg.attempts, next_attempt=msg.next_attempt,
        recipients=tuple(
            QueueRecipient(r.address, r.status.value, r.attempts, r.last_error)
            for r in msg.recipients
        ),
        held=msg.id in held,
        bounce=msg.bounce,
    )


class AdminService:
    """Administration of one open store under one configuration.

    ``queue_control``: the running scheduler of this process, if any (see the
    module docstring; None in the CLI).  ``clock``: Unix seconds (tests).  All
    methods are coroutines; the blocking ones (hashing a password, making a
    DKIM key, reading key files) run off the event loop.
    """

    def __init__(self, store: Store | None, config: Config, *,
                 directory: Directory | None = None,
                 queue_control: QueueControl | None = None,
                 clock: Callable[[], float] = time.time,
                 runtime: Callable[[], Runtime] | None = None) -> None:
        self._runtime = runtime
        self._store = store
        if directory is None:
            if store is None:
                raise ValueError("an admin service needs a store or a directory")
            directory = LmdbDirectory(store)
        #: Domains, accounts and aliases on either backend (``store.api.Directory``).
        self._directory = directory
        self.config = config
        self._queue_control = queue_control
        self._clock = clock
        self._configured = frozenset(domain_name(d) for d in config.domains)
        self._tokens = TokenFile(config.data_dir)

    @property
    def store(self) -> Store:
        """The LMDB store administered.  Raises Cannot on the PostgreSQL store,
        where only the directory (domains, accounts, aliases) is administered
        so far (issue #17)."""
        if self._store is None:
            raise Cannot("not on the PostgreSQL store yet: only domains, accounts and "
                         "aliases are")
        return self._store

    @property
    def data_dir(self) -> Path:
        """The store's directory: ``config.data_dir``."""
        return self.config.data_dir

    # -- domains -------------------------------------------------------------------

    async def ensure_configured_domains(self) -> list[str]:
        """Add the configuration's ``domains`` missing from the store; returns those added."""
        return await ensure_domains(self._directory, sorted(self._configured))

    async def add_domain(self, name: str) -> DomainInfo:
        """Raises InvalidName (``policy.new_domain_name``), AlreadyExists."""
        domain = await self._directory.add_domain(new_domain_name(name))
        return DomainInfo(domain.name, domain.name in self._configured)

    async def delete_domain(self, name: str) -> None:
        """Delete an empty domain and its aliases.

        Raises Cannot for a configured domain (the daemon would add it back at
        its next start) or one that still has accounts, DomainNotFound.
        """
        domain = domain_name(name)
        if domain in self._configured:
            where = self.config.source or "the built-in configuration"
            raise Cannot(f"{domain} is listed in domains of {where}; remove it there first")
        await self._directory.delete_domain(domain)

    async def get_domain(self, name: str) -> DomainInfo:
        """Raises InvalidName, DomainNotFound."""
        domain = await self._local_domain(name)
        return DomainInfo(domain, domain in self._configured)

    async def list_domains(self) -> list[DomainInfo]:
        """Every local domain, by name."""
        return [DomainInfo(d.name, d.name in self._configured)
                for d in await self._directory.list_domains()]

    async def _local_domain(self, name: str) -> str:
        """``name`` normalised; DomainNotFound unless it is a local domain."""
        domain = domain_name(name)
        if not await self._directory.is_local_domain(domain):
            raise DomainNotFound(f"domain {domain!r} is not a local domain")
        return domain

    # -- accounts ------------------------------------------------------------------

    async def add_account(self, address: str, password: str, *, quota: int = 0) -> AccountInfo:
        """Create an account with the default mailboxes.

        ``quota`` in octets, 0 = unlimited.  Raises InvalidName (not
        ``local@domain``), InvalidPassword, DomainNotFound, AlreadyExists, Cannot
        (negative quota).
        """
        address = account_address(address)
        check_password(password)
        if quota < 0:
            raise Cannot("the quota must not be negative")
        await self._local_domain(address.rpartition("@")[2])
        password_hash, scram = await self._hash(password)
        account = await self._directory.add_account(address, password_hash, quota=quota,
                                                    scram=scram)
        return _account(account)

    async def set_password(self, address: str, password: str) -> None:
        """Raises InvalidName, InvalidPassword, AccountNotFound."""
        address = account_address(address)
        check_password(password)
        password_hash, scram = await self._hash(password)
        await self._directory.set_password_hash(address, password_hash, scram)

    async def set_disabled(self, address: str, disabled: bool) -> AccountInfo:
        """Disable an account (logins fail at once in every process, cached
        ones too; mail is still delivered) or enable it again; returns it.
        Raises InvalidName, AccountNotFound."""
        address = account_address(address)
        await self._directory.set_disabled(address, disabled)
        return await self.get_account(address)

    async def _hash(self, password: str) -> tuple[str, ScramKeys | None]:
        # The configured parameters ([auth]), so a new hash needs no rehash at
        # login; the SCRAM keys beside it (None: SASLprep refuses the password).
        auth = self.config.auth
        return (await hash_async(password, argon2_params(auth)),
                await asyncio.to_thread(make_keys, password, auth.scram_iterations))

    async def set_quota(self, address: str, quota: int) -> AccountInfo:
        """Set the quota in octets (0 = unlimited); returns the account.
        Raises InvalidName, AccountNotFound, Cannot (negative)."""
        address = account_address(address)
        if quota < 0:
            raise Cannot("the quota must not be negative")
        await self._directory.set_quota(address, quota)
        return await self.get_account(address)

    async def get_account(self, address: str) -> AccountInfo:
        """Raises InvalidName, AccountNotFound."""
        address = account_address(address)
        account = await self._directory.get_account(address)
        if account is None:
            raise AccountNotFound(f"no account {address}")
        return _account(account)

    async def list_mailboxes(self, address: str) -> list[MailboxView]:
        """The account's selectable mailboxes by name, with their counts (kept
        by the store: no walk over the messages).  Raises InvalidName,
        AccountNotFound."""
        address = account_address(address)
        if self.store.get_account(address) is None:
            raise AccountNotFound(f"no account {address}")
        out = []
        for mb in sorted(self.store.list_mailboxes(address), key=lambda m: m.name):
            if mb.noselect:
                continue
            counts = self.store.mailbox_counts(mb.id)
            out.append(MailboxView(mb.name, mb.messages, counts.unseen, mb.size,
                                   mb.uidvalidity, mb.uidnext, mb.special_use, mb.subscribed))
        return out

    async def status(self) -> StatusInfo:
        """The running daemon, its queue and its store (``mailserver status``).
        Raises Cannot outside a daemon (no ``runtime`` given)."""
        if self._runtime is None:
            raise Cannot("no running daemon here")
        raws = self.store.queue_list()
        oldest = None
        entries = [e for e in (_queue_entry(raw) for raw in raws) if e is not None]
        if entries:
            oldest = max(0.0, self._clock() - min(e.created for e in entries))
        used, map_size = self.store.map_usage()
        connections = await asyncio.to_thread(metrics.open_connections)
        return StatusInfo(self._runtime(), len(entries), oldest, used, map_size, connections)

    async def delete_account(self, address: str) -> None:
        """Delete the account, all its mail and the aliases pointing at it.
        Raises InvalidName, AccountNotFound."""
        await self._directory.delete_account(account_address(address))

    async def list_accounts(self, domain: str | None = None) -> list[AccountInfo]:
        """Accounts by address, only those of ``domain`` if given."""
        name = None if domain is None else domain_name(domain)
        return [_account(a) for a in await self._directory.list_accounts(name)]

    # -- aliases -------------------------------------------------------------------

    async def add_alias(self, address: str, targets: str | Sequence[str]) -> AliasInfo:
        """Deliver mail for ``address`` (``@domain``: every address of the
        domain without an account or alias) to ``targets``: accounts of
        ours, and addresses elsewhere, to which it is forwarded with an SRS
        reverse-path and an ARC seal (``delivery/forward.py``).

        Raises InvalidName, DomainNotFound, AccountNotFound (a target in a
        local domain that is no account), AlreadyExists, Cannot (no target,
        more than ``MAX_ALIAS_TARGETS``).
        """
        address = alias_address(address)
        wanted = [targets] if isinstance(targets, str) else list(targets)
        if not wanted or len(wanted) > MAX_ALIAS_TARGETS:
            raise Cannot(f"an alias needs 1 to {MAX_ALIAS_TARGETS} targets")
        found = [account_address(t) for t in wanted]
        await self._local_domain(address.rpartition("@")[2])
        alias = await self._directory.add_alias(address, found)
        log.info("alias_added", alias=alias.address, targets=list(alias.targets))
        return _alias(alias)

    async def get_alias(self, address: str) -> AliasInfo:
        """Raises InvalidName, NotFound."""
        address = alias_address(address)
        for alias in await self._directory.list_aliases(address.rpartition("@")[2]):
            if alias.address == address:
                return _alias(alias)
        raise NotFound(f"no alias {address}")

    async def delete_alias(self, address: str) -> None:
        """Raises InvalidName, NotFound."""
        await self._directory.delete_alias(alias_address(address))

    async def list_aliases(self, domain: str | None = None) -> list[AliasInfo]:
        """Aliases by address, only those of ``domain`` if given."""
        name = None if domain is None else domain_name(domain)
        return [_alias(a) for a in await self._directory.list_aliases(name)]

    # -- outbound queue ------------------------------------------------------------

    async def list_queue(self) -> list[QueueEntry]:
        """Every queued message, oldest first, with its recipients; records that
        cannot be decoded are logged and left out."""
        held = self.store.queue_held()
        found = (_queue_entry(raw, None, held) for raw in self.store.queue_list())
        return [entry for entry in found if entry is not None]

    async def queued(self, queue_id: str) -> QueueEntry:
        """One queued message.  Raises NotFound, Cannot (unreadable record)."""
        raw = self.store.queue_get(_queue_id(queue_id))
        if raw is None:
            raise NotFound(f"no queued message {queue_id}")
        entry = _queue_entry(raw, queue_id, self.store.queue_held())
        if entry is None:
            raise Cannot(f"the record of queued message {queue_id} cannot be read; "
                         "it can only be deleted")
        return entry

    async def retry(self, queue_id: str) -> None:
        """Make the message due now.  Raises NotFound."""
        found = await self.store.queue_reschedule([_queue_id(queue_id)], self._clock())
        if not found:
            raise NotFound(f"no queued message {queue_id}")
        self._wake()

    async def hold(self, queue_id: str) -> None:
        """Take the message off the schedule until ``release`` (as Postfix's
        ``postsuper -h``): no delivery attempt, no expiry, ``flush`` leaves it.
        A round already in flight finishes.  Raises NotFound."""
        if not await self.store.queue_hold([_queue_id(queue_id)]):
            raise NotFound(f"no queued message {queue_id}")
        log.info("queue_held", queue_id=queue_id)

    async def release(self, queue_id: str) -> None:
        """Put a held message back on the schedule, due now.  Raises NotFound,
        Cannot (it is not held)."""
        queue_id = _queue_id(queue_id)
        if queue_id not in self.store.queue_held():
            if self.store.queue_get(queue_id) is None:
                raise NotFound(f"no queued message {queue_id}")
            raise Cannot(f"queued message {queue_id} is not held")
        await self.store.queue_reschedule([queue_id], self._clock(), only_later=False)
        log.info("queue_released", queue_id=queue_id)
        self._wake()

    async def flush(self) -> int:
        """Make every queued message due now, held ones aside; returns how many."""
        ids = [entry.id for entry in await self.list_queue() if not entry.held]
        count = len(await self.store.queue_reschedule(ids, self._clock())) if ids else 0
        self._wake()
        return count

    async def delete_queued(self, queue_id: str) -> None:
        """Drop the message without a DSN (a round in flight for it is cancelled
        first when this process runs the scheduler).  Raises NotFound."""
        queue_id = _queue_id(queue_id)
        if self._queue_control is not None:
            await self._queue_control.cancel(queue_id)
        if not await self.store.queue_remove(queue_id):
            raise NotFound(f"no queued message {queue_id}")
        log.info("queue_deleted", queue_id=queue_id)

    async def bounce(self, queue_id: str, reason: str = "") -> str:
        """Return the message to its sender: the next delivery round (due now,
        a hold lifted) sends nothing and fails every recipient still active
        with ``550 5.0.0 <reason>``, so the sender gets a DSN (RFC 3464,
        action "failed"; none for a null reverse-path or NOTIFY=NEVER) and
        the message leaves the queue.  Exim's ``-Mg``; Postfix has no such
        verb.  ``reason``: printable text for the DSN's Diagnostic-Code
        (whitespace folded, at most 200 characters; default: "returned by
        the postmaster").  A round in flight is stopped first when this
        process runs the scheduler (the API in the daemon); from the command
        line, a round already in flight may still end with its own outcome.
        Returns the reply.  Raises NotFound, Cannot (an unreadable record)."""
        queue_id = _queue_id(queue_id)
        text = "".join(c for c in " ".join(reason.split()) if c.isprintable())[:200]
        reply = f"550 5.0.0 {text or 'returned by the postmaster'}"
        if self._queue_control is not None:
            await self._queue_control.cancel(queue_id)
        raw = self.store.queue_get(queue_id)
        if raw is None:
            raise NotFound(f"no queued message {queue_id}")
        try:
            record = queue_model.decode(raw)
        except Exception:  # as _queue_entry: unreadable, whatever the error
            raise Cannot(f"the record of queued message {queue_id} cannot be read; "
                         "it can only be deleted") from None
        now = self._clock()
        await self.store.queue_put(queue_id, queue_model.encode(
            dataclasses.replace(record, bounce=reply, next_attempt=now)), now)
        log.info("queue_bounce_requested", queue_id=queue_id, reply=reply)
        self._wake()
        return reply

    def _wake(self) -> None:
        if self._queue_control is not None:
            self._queue_control.wake()

    # -- DKIM keys and DNS ---------------------------------------------------------

    def default_selector(self, algorithm: str) -> str:
        """``[dkim] selector`` for RSA, ``<selector>-<algorithm>`` otherwise (two
        keys of one domain need two selectors, RFC 6376 §3.1)."""
        selector = self.config.dkim.selector
        return selector if algorithm == "rsa" else f"{selector}-{algorithm}"

    def dated_selector(self, algorithm: str, when: float | None = None) -> str:
        """``<[dkim] selector>-YYYYMMDD`` (UTC, ``when`` or now), then
        ``-<algorithm>`` for a key other than RSA: a new selector per key, so
        that a rotation publishes the new record next to the old one
        (M3AAWG DKIM key rotation practice)."""
        day = time.strftime("%Y%m%d", time.gmtime(self._clock() if when is None else when))
        selector = f"{self.config.dkim.selector}-{day}"
        return selector if algorithm == "rsa" else f"{selector}-{algorithm}"

    async def generate_dkim_key(self, domain: str, *, selector: str | None = None,
                                algorithm: str = "rsa") -> DkimKeyInfo:
        """Make a key pair for a local domain and store it under ``data_dir/dkim``.

        Raises DomainNotFound, InvalidName (bad selector or algorithm),
        AlreadyExists (that selector has a key: replacing it would break the
        published record).  The daemon signs with it from its next message
        (``DkimKeyring`` notices the change), once the configuration's
        ``[dkim] algorithms`` lists its algorithm.
        """
        if algorithm not in dkim_keys.ALGORITHMS:
            raise InvalidName(f"DKIM algorithm must be one of {', '.join(dkim_keys.ALGORITHMS)},"
                              f" not {algorithm!r}")
        name = new_domain_name(await self._local_domain(domain))  # a key names a host
        selector = dkim_selector(selector or self.default_selector(algorithm))
        directory = dkim_keys.key_dir(self.data_dir, name)
        for existing in (directory / f"{selector}.key", directory / f"{selector}.retired"):
            if existing.exists():
                raise AlreadyExists(f"{existing} exists; choose another selector")
        path, txt = await asyncio.to_thread(
            dkim_keys.write_key, self.data_dir, name, selector, algorithm)
        return DkimKeyInfo(name, selector, algorithm, path,
                           dkim_record(name, selector, txt),
                           algorithm in self.config.dkim.algorithms)

    async def rotate_dkim_key(self, domain: str, algorithm: str = "rsa"
                              ) -> tuple[DkimKeyInfo, list[DkimKeyInfo]]:
        """Rotate a local domain's key of ``algorithm``: make a new key with a
        dated selector (``dated_selector``), then retire every other active
        key of that algorithm (they sign no more; their records stay listed
        and published until ``delete_dkim_key``), as M3AAWG's DKIM key
        rotation practice says.  Publish the new record before rotating
        where DNS caching matters: the new key signs from the next message.
        Returns ``(new key, retired keys)``.  Raises DomainNotFound,
        InvalidName, AlreadyExists (already rotated today: that selector
        has a key)."""
        key = await self.generate_dkim_key(domain, selector=self.dated_selector(algorithm),
                                           algorithm=algorithm)
        retired = []
        for old in await self.list_dkim_keys(key.domain):
            if old.algorithm == algorithm and not old.retired and old.selector != key.selector:
                path = await asyncio.to_thread(dkim_keys.retire_key, self.data_dir,
                                               old.domain, old.selector)
                retired.append(dataclasses.replace(old, path=path, signing=False,
                                                   retired=True))
        log.info("dkim_key_rotated", domain=key.domain, selector=key.selector,
                 algorithm=algorithm, retired=[k.selector for k in retired])
        return key, retired

    async def delete_dkim_key(self, domain: str, selector: str) -> DkimKeyInfo:
        """Delete a retired key and its record files (withdraw its DNS record
        first).  Returns what was deleted.  Raises NotFound, Cannot (an
        active key: rotate it out first, a signing key is never removed
        by mistake)."""
        name = domain_name(domain)
        for key in await self.list_dkim_keys(name):
            if key.selector == selector:
                if not key.retired:
                    raise Cannot(f"DKIM key {selector!r} of {name} is active; "
                                 "rotate it out before deleting it")
                await asyncio.to_thread(dkim_keys.delete_retired_key, self.data_dir,
                                        key.domain, selector)
                log.info("dkim_key_deleted", domain=key.domain, selector=selector)
                return key
        raise NotFound(f"no DKIM key {selector!r} for {name}")

    async def list_dkim_keys(self, domain: str | None = None) -> list[DkimKeyInfo]:
        """The keys stored for ``domain`` (every domain if None), active and
        retired, by domain and selector."""
        name = None if domain is None else domain_name(domain)
        return await asyncio.to_thread(self._read_keys, name)

    def _read_keys(self, domain: str | None) -> list[DkimKeyInfo]:
        root = self.data_dir / "dkim"
        if domain is not None:
            dirs = [dkim_keys.key_dir(self.data_dir, domain)]
        else:
            dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        out = []
        for directory in dirs:
            if not directory.is_dir():
                continue
            paths = [*directory.glob("*.key"), *directory.glob(f"*{dkim_keys.RETIRED}")]
            for path in sorted(paths, key=lambda p: p.stem):
                txt_path = path.with_suffix(".txt")
                if txt_path.is_file():
                    txt = txt_path.read_text("ascii").strip()
                    tags = dict(t.strip().partition("=")[::2] for t in txt.split(";"))
                    algorithm = tags.get("k", "rsa")
                else:  # not written by keygen: the key itself says what it is
                    txt = ""
                    algorithm = dkim_keys.algorithm_of(path.read_bytes())
                retired = path.suffix == dkim_keys.RETIRED
                out.append(DkimKeyInfo(directory.name, path.stem, algorithm, path,
                                       dkim_record(directory.name, path.stem, txt),
                                       algorithm in self.config.dkim.algorithms
                                       and not retired, retired=retired))
        return out

    async def dns_records(self, domain: str) -> list[DnsRecord]:
        """The records a local domain should publish: MX, SPF, DKIM, DMARC, SRV
        (``admin.dns.domain_records``).

        Raises DomainNotFound for a domain that is not local, ConfigError when
        the configured hostname cannot be published (``localhost``, a bare
        name, an IP address).
        """
        name = await self._local_domain(domain)
        hostname = check_public_hostname(self.config.hostname, self.config.source)
        dkim = [k.record for k in await self.list_dkim_keys(name) if k.record.value]
        return domain_records(name, hostname, self.config.listeners, dkim)


    async def dns_check(self, domain: str,
                        resolver: Resolver | None = None) -> list[Verdict]:
        """``dns_records`` checked against what the configured resolver
        (``[dns]`` settings; or ``resolver``) answers, then the
        host's addresses, reverse DNS and MX agreement (``admin/dns_check.py``).
        Raises as ``dns_records``."""
        records = await self.dns_records(domain)
        if resolver is None:
            out = self.config.outbound
            resolver = DnsPythonResolver(out.resolver_address, out.resolver_port,
                                         timeout=out.dns_timeout)
        hostname = check_public_hostname(self.config.hostname, self.config.source)
        verdicts = await dns_check.check_records(records, resolver, hostname)
        return verdicts + await dns_check.check_host(records[0].name, hostname, resolver)

    # -- backup --------------------------------------------------------------------

    async def backup(self, dest: Path) -> BackupReport:
        """Back up the store and the configuration's files into ``dest``
        (missing or empty; else ``Cannot``), while the daemon runs: see
        ``admin/backup.py`` for the layout and the manifest."""
        report = await backup_mod.backup(self.store, self.config, dest)
        log.info("backup_written", path=str(report.path), files=report.files,
                 size=report.size, duration_ms=round(report.seconds * 1000))
        return report

    async def verify_store(self) -> FsckReport:
        """Check the open store for damage (``store/fsck.py``), in one read
        transaction: what ``admin.verify`` does for a directory, for a process
        that has the store open (the daemon's HTTP API)."""
        return await asyncio.to_thread(self.store.check, queue_model.decode)

    # -- import and export -----------------------------------------------------------

    async def import_mail(self, kind: str, path: Path, account: str, *,
                          mailbox: str | None = None,
                          progress: ProgressFn | None = None) -> TransferReport:
        """Import an mbox file or directory, or a Maildir (``kind``), into
        ``account`` through the store's APPEND path; see ``admin/mailio.py``."""
        report = await mailio.import_mail(self.store, self.config, kind, path, account,
                                          mailbox=mailbox, progress=progress)
        log.info("mail_imported", account=account, format=kind, messages=report.messages,
                 skipped=report.skipped, duration_ms=round(report.seconds * 1000))
        return report

    async def import_imap(self, remote: Remote, account: str, *,
                          progress: ProgressFn | None = None) -> TransferReport:
        """Copy every folder of a remote IMAP account into ``account``,
        resumable; see ``admin/imapimport.py`` (errors there)."""
        report = await imapimport.import_imap(self.store, self.config, remote, account,
                                              progress=progress)
        log.info("mail_imported", account=account, format="imap", remote=remote.host,
                 messages=report.messages, skipped=report.skipped,
                 duration_ms=round(report.seconds * 1000))
        return report

    async def export_mail(self, account: str, kind: str, path: Path, *,
                          progress: ProgressFn | None = None) -> TransferReport:
        """Export every mailbox of ``account`` as mbox files or a Maildir
        (``kind``) into ``path``; see ``admin/mailio.py``."""
        return await mailio.export_mail(self.store, account, kind, path, progress=progress)
    # -- API tokens ------------------------------------------------------------------

    # -- junk filter -------------------------------------------------------------

    async def junk_train(self, address: str, spam: Path | None = None,
                         ham: Path | None = None,
                         progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Train ``address``'s junk model (and the global one) on the mbox
        files or Maildirs ``spam`` and ``ham`` (``admin/mailformats``
        readers); returns ``(spam, ham)`` messages trained.  Raises
        AccountNotFound, Cannot (a path that is no mbox or Maildir), OSError."""
        address = account_address(address)
        if self.store.get_account(address) is None:
            raise AccountNotFound(f"no account {address}")
        junk = JunkFilter(self.store, self.config.junk)
        done = [0, 0]
        for path, is_spam in ((spam, True), (ham, False)):
            if path is None:
                continue
            for data in mailio.messages_in(Path(path)):
                await junk.train(address, await content_address(data), data, is_spam)
                done[0 if is_spam else 1] += 1
                if progress is not None:
                    progress(done[0] + done[1])
        return done[0], done[1]

    async def junk_test(self, address: str, data: bytes) -> JunkVerdict:
        """How ``address``'s filter would score the message ``data`` (bytes):
        the verdict with its score and deciding features.  Raises AccountNotFound."""
        address = account_address(address)
        if self.store.get_account(address) is None:
            raise AccountNotFound(f"no account {address}")
        junk = JunkFilter(self.store, self.config.junk)
        return junk.verdict(address, await junk.features_of(data))

    async def junk_stats(self, address: str) -> dict[str, Any]:
        """Messages trained as spam and ham, the account's and the global model's,
        and the threshold that applies (``threshold``, ``arm``: "own",
        "control" or "candidate", see ``junk.filter``).  Raises AccountNotFound."""
        address = account_address(address)
        if self.store.get_account(address) is None:
            raise AccountNotFound(f"no account {address}")
        own, glob = self.store.junk_totals(address), self.store.junk_totals("")
        threshold, arm = JunkFilter(self.store, self.config.junk).threshold_for(address)
        return {"spam": own[0], "ham": own[1], "global_spam": glob[0], "global_ham": glob[1],
                "threshold": threshold, "arm": arm}

    async def junk_set_threshold(self, address: str, threshold: float | None) -> None:
        """Give ``address`` a junk threshold of its own (stricter: lower; looser:
        higher), or None to go back to the configured one (and, when one runs,
        the A/B comparison).  One synced commit; new mail is scored with it
        at once, in every process.  Raises AccountNotFound, UserError (not in
        (0, 1])."""
        address = account_address(address)
        if self.store.get_account(address) is None:
            raise AccountNotFound(f"no account {address}")
        if threshold is not None and not 0 < threshold <= 1:
            raise UserError(f"a junk threshold is more than 0 and at most 1, not {threshold}")
        await self.store.junk_set_threshold(address, threshold)
        log.info("junk_threshold", account=address, threshold=threshold)

    async def junk_reset(self, address: str) -> int:
        """Forget ``address``'s own model (the global one keeps what it learnt)."""
        address = account_address(address)
        if self.store.get_account(address) is None:
            raise AccountNotFound(f"no account {address}")
        removed = await self.store.junk_reset(address)
        log.info("junk_reset", account=address, keys=removed)
        return removed

    # -- abuse limits ------------------------------------------------------------

    async def limits(self, name: str = "") -> list[LimitCounter]:
        """The running daemon's abuse-limit counters, every one or ``name``'s
        (``admin/limits.py``).  Raises InvalidName, Cannot (no daemon)."""
        return await asyncio.to_thread(limits_mod.show_limits, self.data_dir / "run", name)

    async def reset_limits(self, name: str) -> int:
        """Forget ``name``'s counters in every worker; how many were dropped.
        Raises InvalidName, Cannot (no daemon)."""
        dropped = await asyncio.to_thread(limits_mod.reset_limits, self.data_dir / "run", name)
        log.info("limits_reset", name=name, counters=dropped)
        return dropped

    async def create_token(self, name: str, *, read_only: bool = False) -> tuple[TokenInfo, str]:
        """Make a bearer token for the HTTP API; returns its record and the
        token (shown once: only its SHA-256 is kept).  Raises InvalidName,
        AlreadyExists, OSError."""
        info, token = await asyncio.to_thread(self._tokens.create, name, read_only=read_only,
                                              now=self._clock())
        log.info("api_token_created", token=info.name, read_only=info.read_only)
        return info, token

    async def list_tokens(self) -> list[TokenInfo]:
        """Every token's record, by name."""
        return await asyncio.to_thread(self._tokens.list)

    async def revoke_token(self, name: str) -> TokenInfo:
        """Remove a token (refused at the next request, in every worker); returns
        its record.  Raises NotFound, OSError."""
        info = await asyncio.to_thread(self._tokens.revoke, name)
        log.info("api_token_revoked", token=info.name)
        return info

    def check_token(self, token: str) -> TokenInfo | None:
        """The record of ``token`` (the whole ``msv1_...`` string), None when
        it is unknown or revoked.  Cheap (a ``stat``): runs on the event loop."""
        return self._tokens.check(token)


async def _open_store(config: Config, *, create: bool) -> Store:
    return await Store.open(config.data_dir, map_size=config.store.map_size,
                            new_mail_limit=config.store.new_mail_limit,
                            fill_warning_levels=config.store.fill_warning_levels, create=create)


@contextlib.asynccontextmanager
async def open_admin(config: Config) -> AsyncIterator[AdminService]:
    """The admin service over the existing store of ``config``; closes it after.

    Never creates a store: raises StoreNotFound when ``data_dir`` holds none
    (a command run from the wrong directory must not make an empty one).
    The configured domains are added when missing, as the daemon does at start.
    """
    if config.store.backend == "postgresql":
        # Imported here: the PostgreSQL store's modules, for its commands only.
        from mailserver.services import close_node, open_node

        node = await open_node(config)
        try:
            assert node.directory is not None
            service = AdminService(None, config, directory=node.directory)
            await service.ensure_configured_domains()
            yield service
        finally:
            await close_node(node)
        return
    store = await _open_store(config, create=False)
    try:
        service = AdminService(store, config)
        await service.ensure_configured_domains()
        yield service
    finally:
        await store.close()


async def initialise(config: Config) -> bool:
    """Create the store of ``config`` (and ``data_dir``) unless it exists, and
    its configured domains.  Returns True when the store is new."""
    new = not Store.exists(config.data_dir)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = await _open_store(config, create=True)
    try:
        await AdminService(store, config).ensure_configured_domains()
    finally:
        await store.close()
    return new
