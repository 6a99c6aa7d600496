"""The IMAP listener kind (``listeners.kinds``): one task per connection.

The base (``listeners/base.py``) binds, counts the connection limits
(``limits.max_connections`` per listener, ``limits.max_connections_per_ip``;
refused with ``* BYE`` as RFC 3501 §7.1.5 allows for a greeting) and shuts
down gracefully: sessions between commands get ``* BYE`` at once, commands
in flight may finish within the grace period, then the rest are cancelled.
Every connection task is owned by the listener and discarded when done.
"""

from __future__ import annotations

import asyncio

import structlog

from mailserver.config import Listener
from mailserver.imap.connection import Connection, _Stream
from mailserver.listeners.base import ListenerBase
from mailserver.log import next_conn_id
from mailserver.services import Services

log = structlog.get_logger("mailserver.imap")


class _Served:
    """One accepted connection as the base sees it (``listeners.base.Conn``)."""

    __slots__ = ("conn", "shutdown_requested", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.conn: Connection | None = None  # once admitted
        self.shutdown_requested = False

    def begin_shutdown(self) -> None:
        self.shutdown_requested = True
        if self.conn is not None:
            self.conn.request_shutdown()

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def wait_closed(self) -> None:
        if self.task is not None:
            # asyncio.wait: a cancelled waiter must not cancel the task.
            await asyncio.wait((self.task,))


class ImapListener(ListenerBase):
    """One listening socket serving IMAP (``ListenerHandle``)."""

    # Commands in flight get the grace period, then are cancelled (no slack).
    close_slack = 0.0
    log = log

    def protocol_factory(self) -> asyncio.BaseProtocol:
        return _Stream(self._accepted)

    def _accepted(self, stream: _Stream) -> None:
        transport = stream.transport
        assert transport is not None
        if self.closing:
            transport.abort()
            return
        peername = transport.get_extra_info("peername")
        host = str(peername[0]) if peername else "unknown"
        served = _Served()
        self.connections.add(served)
        served.task = asyncio.get_running_loop().create_task(self._serve(stream, host, served))

    async def _serve(self, stream: _Stream, host: str, served: _Served) -> None:
        try:
            conn_id = next_conn_id()
            if not await self.acquire_slot(served, host):
                log.warning("imap_connection_refused", conn_id=conn_id, peer=host,
                            listener=self.listener.name, reason="too many connections")
                stream.write(b"* BYE Too many connections\r\n")
                stream.close()
                return
            conn = Connection(stream, self.services, self.listener, conn_id=conn_id, peer=host)
            served.conn = conn
            if self.closing or served.shutdown_requested:
                conn.request_shutdown()
            await conn.run()
        finally:
            self.release_slot(served, host)


async def start(listener: Listener, services: Services) -> ImapListener:
    """Bind ``listener`` and serve IMAP on it (RFC 3501); returns its handle.

    A socket in ``services.listen_sockets`` under the listener's name is
    served instead of binding address and port.  Raises ``OSError`` when the
    address cannot be bound.
    """
    handle = ImapListener(listener, services)
    await handle.start()
    return handle
