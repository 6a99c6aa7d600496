"""What the protocol servers get from the composition root (``app.py``).

Each protocol package exposes::

    async def start(listener: Listener, services: Services) -> ListenerHandle

(``mailserver.smtp.server.start`` for "smtp" and "submission" listeners,
``mailserver.imap.server.start`` for "imap").  ``app.py`` is the only caller.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mailserver.config import Config
from mailserver.store.store import Store

if TYPE_CHECKING:
    from mailserver.auth.throttle import AuthThrottle
    from mailserver.queue.manager import QueueManager


@dataclass(slots=True)
class Services:
    """Shared, long-lived objects; one per process."""

    config: Config
    store: Store
    ssl_context: ssl.SSLContext  # server side, for STARTTLS and implicit TLS
    #: The outbound queue (None: remote recipients on submission get 451 4.3.0).
    queue: QueueManager | None = None
    #: Failed-AUTH delays per client IP, shared by every listener (None: one per listener).
    auth_throttle: AuthThrottle | None = None
    #: Listening sockets bound by the supervisor (``workers.py``), by listener
    #: name.  When a listener's name is here, ``start`` must serve that socket
    #: (``loop.create_server(sock=...)``) instead of binding address and port:
    #: it is this worker's member of a SO_REUSEPORT group, one per worker.
    listen_sockets: dict[str, socket.socket] = field(default_factory=dict)
    #: The SMTP hooks (``smtp.handler.SmtpHooks``: check pipeline + delivery) of each
    #: "smtp"/"submission" listener, by name, built by ``app.build_smtp_hooks``.
    smtp_hooks: dict[str, Any] = field(default_factory=dict)


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
