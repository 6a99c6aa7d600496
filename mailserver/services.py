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

from mailserver.config import Config
from mailserver.counters import Counters, LocalCounters
from mailserver.errors import AlreadyExists
from mailserver.store.store import Store

if TYPE_CHECKING:
    from mailserver.queue.manager import QueueManager


@dataclass(slots=True)
class Services:
    """Shared, long-lived objects; one per process."""

    config: Config
    store: Store
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

    def __post_init__(self) -> None:
        if self.counters is None:
            self.counters = LocalCounters(self.config.limits)


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


async def ensure_domains(store: Store, domains: Iterable[str]) -> list[str]:
    """Make each of ``domains`` a local domain of ``store`` unless it is one;
    returns those this call added.

    The one place that creates configured domains (the daemon, a worker, the
    supervisor, the admin service): another process on the same store may add
    one first, which is not an error.  Raises ``InvalidName``, ``MailserverError``.
    """
    added = []
    for domain in domains:
        if not store.is_local_domain(domain):
            with contextlib.suppress(AlreadyExists):
                await store.add_domain(domain)
                added.append(domain)
    return added
