"""The SMTP and submission listener kind (``listeners.kinds``).

Each accepted connection is an ``adapter.SmtpConnection`` sharing the
listener's ``handler.SmtpHooks`` (its check pipeline and delivery, built in
``app.py``).  The base (``listeners/base.py``) binds, counts the connection limits (RFC 5321 §4.5.3 leaves them to us; refused at the greeting
with ``421 4.7.0``) and shuts down gracefully: idle connections get
``421 4.3.2`` at once, those in DATA may finish their transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from mailserver.config import Listener
from mailserver.listeners.base import ListenerBase
from mailserver.services import Services
from mailserver.smtp.adapter import ConnectionSettings, SmtpConnection


class SmtpListener(ListenerBase):
    """A started SMTP/submission listener (``services.ListenerHandle``); the
    ``adapter.Registry`` of its connections."""

    log = structlog.get_logger("mailserver.smtp")

    def __init__(self, listener: Listener, services: Services) -> None:
        super().__init__(listener, services)
        self._settings, self._handler = self._build()

    def _build(self) -> tuple[ConnectionSettings, Any]:
        listener, services = self.listener, self.services
        config = services.config
        submission = listener.protocol == "submission"
        settings = ConnectionSettings(
            listener_name=listener.name,
            hostname=config.hostname,
            limits=config.limits,
            submission=submission,
            starttls_context=services.ssl_context if listener.tls == "starttls" else None,
            implicit_tls=listener.tls == "implicit",
        )
        return settings, services.smtp_hooks[listener.name]

    def reconfigure(self) -> None:
        """``ListenerBase.reconfigure``: new connections get the reloaded limits
        and hooks (checks); open ones keep the pair they were made with."""
        super().reconfigure()
        self._settings, self._handler = self._build()

    def protocol_factory(self) -> asyncio.BaseProtocol:
        """``ListenerBase.protocol_factory``: a new ``SmtpConnection`` for this listener."""
        return SmtpConnection(self._handler, self._settings, self)

    async def admit(self, conn: SmtpConnection) -> bool:
        """``adapter.Registry.admit``: take a connection slot for ``conn``'s client IP."""
        return await self.acquire_slot(conn, conn.peer_ip)

    def release(self, conn: SmtpConnection) -> None:
        """``adapter.Registry.release``: give back ``conn``'s slot (idempotent)."""
        self.release_slot(conn, conn.peer_ip)


async def start(listener: Listener, services: Services) -> SmtpListener:
    """Bind ``listener`` (protocol "smtp" or "submission") and serve it.

    "smtp" is the MX role (RFC 5321): mail for local domains only, no AUTH.
    "submission" is RFC 6409 / RFC 8314: AUTH required (offered under TLS
    only), sender (MAIL FROM and From:) must be the user's own address;
    remote recipients go to ``services.queue`` (451 4.3.0 when it is None).
    ``listener.tls``: "starttls" offers STARTTLS (RFC 3207), "implicit" runs
    TLS from the first byte, "none" neither.  Raises ``OSError`` on bind failure.
    """
    handle = SmtpListener(listener, services)
    await handle.start()
    return handle
