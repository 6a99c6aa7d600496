"""The real outbound queue between our DNS server and our receiving SMTP server.

``outbound_settings`` points the queue at a test DNS server and SMTP port,
with short timeouts, no jitter and no delay warnings; a test overrides what
it is about.  ``LocalSink`` stands where local delivery would be (DSNs to
our own senders land there), and ``OutboundEnv`` bundles the DNS server
(``dest_dns``), a receiver with STARTTLS, the store and the manager under
test, torn down in reverse by ``outbound_env``.  Waiting is on events.

Queue actions (list, show, retry, flush, delete) go through the admin
service, as in the daemon: ``queue_admin`` builds one over the real store
that tells the manager under test (its ``QueueControl``); ``queued_or_none``
is ``AdminService.queued`` with None for a message that is not queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mailserver.admin import AdminService, QueueControl, QueueEntry
from mailserver.app import resolver_for
from mailserver.config import Config
from mailserver.dkim.keys import DkimKeyring
from mailserver.errors import NotFound
from mailserver.queue.manager import QueueManager
from mailserver.queue.settings import OutboundSettings
from mailserver.store.api import LmdbQueue
from mailserver.store.store import Store
from support.dnsserver import DnsServer, dest_dns
from support.smtpreceiver import Receiver


def outbound_settings(dns: DnsServer, smtp_port: int, **kw: Any) -> OutboundSettings:
    """Settings asking ``dns`` and delivering to ``smtp_port``; ``kw`` overrides."""
    args: dict[str, Any] = dict(
        hostname="mail.example.test", resolver_address=dns.address, resolver_port=dns.port,
        smtp_port=smtp_port, connect_timeout=5, command_timeout=10, backoff=(3600.0,),
        jitter=0.0, delay_warning=None, dns_timeout=5,
    )
    args.update(kw)
    return OutboundSettings(**args)


def queue_admin(store: Store, queue: QueueControl | None, *,
                clock: Callable[[], float] = time.time) -> AdminService:
    """The admin service over ``store`` (a default configuration but for the
    data directory: the queue actions need none) telling ``queue`` of
    retries, flushes and deletions; ``clock`` as the manager's (tests)."""
    return AdminService(store, Config(data_dir=store.path.parent), queue_control=queue,
                        clock=clock)


async def queued_or_none(admin: AdminService, queue_id: str) -> QueueEntry | None:
    """``admin.queued(queue_id)``, or None when there is no such queued message."""
    try:
        return await admin.queued(queue_id)
    except NotFound:
        return None


async def is_local(address: str) -> bool:
    return address.endswith("@example.test")


@dataclass
class LocalSink:
    """The queue's ``deliver_local``: records ``(message, recipient)`` pairs."""

    messages: list[tuple[bytes, str]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def deliver(self, msg: bytes, rcpt: str) -> None:
        self.messages.append((msg, rcpt))
        self._arrived.set()

    async def wait(self, n: int, timeout: float = 30.0) -> list[tuple[bytes, str]]:
        """Wait until ``n`` messages were delivered; return them."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages


@dataclass
class OutboundEnv:
    tmp: Path
    dns: DnsServer
    rx: Receiver
    store: Store
    sink: LocalSink = field(default_factory=LocalSink)
    mgr: QueueManager | None = None

    @property
    def local(self) -> list[tuple[bytes, str]]:
        return self.sink.messages

    async def wait_local(self, n: int) -> None:
        await self.sink.wait(n)

    @property
    def admin(self) -> AdminService:
        """The admin service over the store, controlling the latest manager."""
        return queue_admin(self.store, self.mgr)

    def settings(self, **kw: Any) -> OutboundSettings:
        """``outbound_settings`` for this env's DNS and receiver; ``kw`` overrides
        (``smtp_port`` too)."""
        return outbound_settings(self.dns, kw.pop("smtp_port", self.rx.port), **kw)

    def new_manager(self, settings: OutboundSettings, **kw: Any) -> QueueManager:
        """A manager (not started) on this env's store; stopped at teardown."""
        self.mgr = QueueManager(LmdbQueue(self.store), settings, resolver=resolver_for(settings),
                                is_local=is_local,
                                deliver_local=self.sink.deliver, **kw)
        return self.mgr

    def unstarted_manager(self, **kw: Any) -> QueueManager:
        """A manager with ``settings(**kw)`` (slow retries), not started: the
        test queues first and starts it."""
        return self.new_manager(self.settings(**kw))

    async def manager(self, **kw: Any) -> QueueManager:
        """A started manager retrying quickly (backoff 0.05 s, 0.1 s unless ``kw``
        says otherwise; ``kw`` overrides any setting), signing with the DKIM
        keys under ``tmp`` as the daemon does with its data directory."""
        settings = self.settings(**{"backoff": (0.05, 0.1), **kw})
        mgr = self.new_manager(settings, dkim_keys=DkimKeyring(self.tmp).keys_for)
        await mgr.start()
        return mgr


E = TypeVar("E", bound=OutboundEnv)


@asynccontextmanager
async def outbound_env(tmp: Path, cls: type[E]) -> AsyncIterator[E]:
    """``cls`` set up in ``tmp``: ``dest_dns()``, a STARTTLS receiver, the store."""
    dns = dest_dns()
    rx = Receiver(tls_dir=tmp)
    await rx.start()
    env = cls(tmp, dns, rx, await Store.open(tmp))
    try:
        yield env
    finally:
        if env.mgr is not None:
            await env.mgr.stop()
        await env.store.close()
        await rx.stop()
        dns.stop()
