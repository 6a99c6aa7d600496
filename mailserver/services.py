"""What the protocol servers get from the composition root (``app.py``).

Each listener kind exposes::

    async def start(listener: Listener, services: Services) -> ListenerHandle

registered by protocol name in ``listeners/kinds.py``; ``app.py`` is the
only caller.  ``ensure_domains`` is the one place configured domains are made.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mailserver.auth.cache import CredentialCache
from mailserver.auth.login import Accounts, Authenticator
from mailserver.auth.passwords import Argon2Params, Hasher, default_threads
from mailserver.auth.scram import SECRET_FILE, ScramLogins, load_secret
from mailserver.auth.slots import CoreSlots
from mailserver.config import AuthSettings, Config, worker_count
from mailserver.counters import Counters, LocalCounters
from mailserver.errors import AlreadyExists
from mailserver.store.api import (
    Directory,
    LmdbDirectory,
    LmdbMailboxes,
    LmdbMessages,
    LmdbQueue,
    Mailboxes,
    Messages,
    StoreDelivery,
    lmdb_delivery,
)
from mailserver.store.store import Store

if TYPE_CHECKING:
    from mailserver.admin import AdminService
    from mailserver.checks.rules import Room
    from mailserver.queue.manager import QueueManager
    from mailserver.queue.storage import QueueStore
    from mailserver.store.pg.node import PgNode


@dataclass(frozen=True, slots=True)
class Backend:
    """The store as the daemon's services use it, on either backend
    (``[store] backend``): the directory, mailboxes' messages, local delivery,
    the outbound queue's store; ``room``: LMDB's headroom (None: no map that
    fills up); ``lmdb``: the LMDB ``Store`` itself, which IMAP, the admin
    service, the junk filter and the http listener still use (None on
    PostgreSQL, where the configuration refuses those, issue #17)."""

    directory: Directory
    mailboxes: Mailboxes
    messages: Messages
    delivery: StoreDelivery
    queue: QueueStore
    room: Room | None = None
    lmdb: Store | None = None


def lmdb_backend(store: Store) -> Backend:
    """``Backend`` over the LMDB ``Store``."""
    return Backend(LmdbDirectory(store), LmdbMailboxes(store), LmdbMessages(store),
                   lmdb_delivery(store), LmdbQueue(store), store.headroom, store)


@dataclass(slots=True)
class Services:
    """Shared, long-lived objects; one per process."""

    config: Config
    #: The store's parts on either backend (``Backend``).
    backend: Backend
    ssl_context: ssl.SSLContext  # server side, for STARTTLS and implicit TLS
    #: The outbound queue (None: remote recipients on submission get 451 4.3.0).
    queue: QueueManager | None = None
    #: Connection slots and failed-login delays per client IP, shared by every
    #: listener and every worker (``counters/``).
    #: None: this process's own table (``LocalCounters``), made at init.
    counters: Counters = None  # type: ignore[assignment]
    #: Listening sockets bound by the supervisor (``process/``), by listener
    #: name.  When a listener's name is here, ``start`` must serve that socket
    #: (``loop.create_server(sock=...)``) instead of binding address and port:
    #: it is this worker's member of a SO_REUSEPORT group, one per worker.
    listen_sockets: dict[str, socket.socket] = field(default_factory=dict)
    #: The SMTP hooks (``smtp.handler.SmtpHooks``: check pipeline + delivery) of each
    #: "smtp"/"submission" listener, by name, built by ``app.build_smtp_hooks``.
    smtp_hooks: dict[str, Any] = field(default_factory=dict)
    #: Logins of IMAP and SMTP AUTH alike: hashing pool and credential cache
    #: (``auth.login``).  None: made from ``config.auth`` at init.
    authenticator: Authenticator = None  # type: ignore[assignment]
    #: The admin service of this process (``App.admin()``): what the HTTP admin
    #: API calls.  None where no App made one (the http listener then has no API).
    admin: AdminService | None = None
    #: SCRAM-SHA-256(-PLUS) logins of IMAP and SMTP AUTH (``auth.scram``);
    #: None: the mechanisms are not offered.
    scram: ScramLogins | None = None
    #: Mail-flow statistics and events for the API (``analytics.remote.FlowSource``:
    #: this process's hub, or the supervisor's).  None: analytics off.
    flow: Any = None
    #: The junk filter (``junk.filter.JunkFilter``) IMAP trains from users'
    #: Junk moves; None: ``[junk] enabled = false``.
    junk: Any = None

    def __post_init__(self) -> None:
        if self.counters is None:
            self.counters = LocalCounters(self.config.limits)
        if self.authenticator is None:
            self.authenticator = build_authenticator(self.config, self.backend.directory)

    @property
    def store(self) -> Store:
        """The LMDB store (IMAP, admin, http).  Raises RuntimeError on the
        PostgreSQL backend, where the configuration refuses what needs it."""
        if self.backend.lmdb is None:
            raise RuntimeError("this needs the LMDB store")
        return self.backend.lmdb


def argon2_params(settings: AuthSettings) -> Argon2Params:
    """The configured argon2id parameters (``[auth]``)."""
    return Argon2Params(memory_kib=settings.argon2_memory, time_cost=settings.argon2_time_cost,
                        parallelism=settings.argon2_parallelism)


def build_authenticator(config: Config, accounts: Accounts) -> Authenticator:
    """The process's ``Authenticator`` as ``config.auth`` describes it.

    ``hash_threads`` (0: the cores but one, at least one) bound the hashes
    running at once: in a single process, its pool's threads; with several
    workers, each has that many threads but all share as many slots
    (``auth.slots``, flock files in ``data_dir/run``), so N workers on N
    cores still leave a core to the event loops.
    """
    settings = config.auth
    threads = settings.hash_threads or default_threads()
    slots = None
    if worker_count(config) > 1:
        slots = CoreSlots(config.data_dir / "run", threads)
    return Authenticator(accounts, Hasher(argon2_params(settings), threads, slots),
                         CredentialCache(settings.cache_ttl, settings.cache_size),
                         scram_iterations=settings.scram_iterations)


def build_scram(config: Config, store: Store, end_point: bytes | None) -> ScramLogins:
    """The process's ``ScramLogins``: ``[auth] scram_iterations``, the secret in
    ``data_dir`` (made once, shared by every worker), ``end_point`` the
    ``tls-server-end-point`` data of our certificate (``tls.server_end_point``).
    Raises OSError when the secret cannot be read or made (blocking: call
    off the event loop)."""
    return ScramLogins(store, config.auth.scram_iterations,
                       load_secret(config.data_dir / SECRET_FILE), end_point)


class ListenerHandle(Protocol):
    """A started listener."""

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when the config said 0)."""
        ...

    async def shutdown(self, grace: float) -> None:
        """Stop accepting at once; let commands/transactions in flight finish for up
        to ``grace`` seconds (IMAP: send ``* BYE`` to idle sessions); then close
        every connection."""
        ...


async def ensure_domains(directory: Directory, domains: Iterable[str]) -> list[str]:
    """Make each of ``domains`` a local domain of ``directory`` (either backend's,
    ``store.api.Directory``) unless it is one; returns those this call added.

    The one place that creates configured domains (the daemon, a worker, the
    supervisor, the admin service): another process (or node) on the same
    store may add one first, which is not an error.  Raises ``InvalidName``,
    ``MailserverError``.
    """
    added = []
    for domain in domains:
        if not await directory.is_local_domain(domain):
            with contextlib.suppress(AlreadyExists):
                await directory.add_domain(domain)
                added.append(domain)
    return added


async def open_node(config: Config) -> PgNode:
    """This node's PostgreSQL store (``[store]``) with its blobs in the
    database or in an S3-compatible object store (``[blobs]``), opened.  Raises
    StoreUnavailable (schema, durability, connection), the S3 client's errors."""
    # Imported here: only this backend needs them, and aiobotocore takes a
    # while to import.
    from mailserver.store.pg.node import PgNode
    from mailserver.store.s3 import S3Objects

    objects: S3Objects | None = None
    blobs = config.blobs
    if blobs.backend == "s3":
        objects = S3Objects(endpoint=blobs.endpoint or None, bucket=blobs.bucket,
                            access_key=blobs.access_key, secret_key=blobs.secret_key,
                            region=blobs.region)
        await objects.open()
    node = PgNode(config.store.dsn, writer_connections=config.store.writer_connections,
                  objects=objects)
    try:
        await node.open()
    except BaseException:
        if objects is not None:
            await objects.close()
        raise
    return node


def node_backend(node: PgNode) -> Backend:
    """``Backend`` over an opened ``PgNode``."""
    assert node.directory is not None and node.messages is not None and node.queue is not None
    assert node.mailboxes is not None
    return Backend(node.directory, node.mailboxes, node.messages,
                   StoreDelivery(node.directory, node.messages), node.queue)


async def close_node(node: PgNode) -> None:
    """Close ``open_node``'s node and its object store."""
    await node.close()
    close = getattr(node.objects, "close", None)
    if close is not None:
        await close()
