"""The IMAP listener: accepts connections, enforces connection limits, shuts
down gracefully (after uvicorn: stop listening, ask each connection to finish,
wait up to the grace period, then cancel).

Every connection task is owned by the listener and discarded when done.
Limits (checked at accept, answered with ``* BYE`` as RFC 3501 §7.1.5
allows for a greeting): ``limits.max_connections`` per listener and
``limits.max_connections_per_ip``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import structlog

from mailserver.config import Listener
from mailserver.imap.connection import Connection, _Stream
from mailserver.log import next_conn_id
from mailserver.services import Services

log = structlog.get_logger("mailserver.imap")

_TLS_HANDSHAKE_TIMEOUT = 30.0
#: listen(2) backlog: asyncio's default of 100 overflows (SYN retries of 1 s)
#: when a burst of clients connects at once.  It also applies to a socket
#: bound by the supervisor: serving it calls listen(2) again.
LISTEN_BACKLOG = 1024


class ImapListener:
    """One listening socket serving IMAP (``ListenerHandle``)."""

    def __init__(self, listener: Listener, services: Services) -> None:
        self.listener = listener
        self.services = services
        self.limits = services.config.limits
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._conns: set[Connection] = set()
        self._per_ip: Counter[str] = Counter()
        self._closing = False

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        implicit = self.listener.tls == "implicit"
        ssl = self.services.ssl_context if implicit else None
        handshake_timeout = _TLS_HANDSHAKE_TIMEOUT if implicit else None
        sock = self.services.listen_sockets.get(self.listener.name)
        if sock is not None:  # bound by the supervisor for this worker (workers.py)
            self._server = await loop.create_server(
                lambda: _Stream(self._accepted), sock=sock, backlog=LISTEN_BACKLOG,
                ssl=ssl, ssl_handshake_timeout=handshake_timeout)
        else:
            self._server = await loop.create_server(
                lambda: _Stream(self._accepted), self.listener.address, self.listener.port,
                backlog=LISTEN_BACKLOG, ssl=ssl, ssl_handshake_timeout=handshake_timeout)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def _accepted(self, stream: _Stream) -> None:
        transport = stream.transport
        assert transport is not None
        if self._closing:
            transport.abort()
            return
        peername = transport.get_extra_info("peername")
        host = str(peername[0]) if peername else "unknown"
        task = asyncio.get_running_loop().create_task(self._serve(stream, host))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, stream: _Stream, host: str) -> None:
        conn_id = next_conn_id()
        if (len(self._conns) >= self.limits.max_connections
                or self._per_ip[host] >= self.limits.max_connections_per_ip):
            log.warning("imap_connection_refused", conn_id=conn_id, peer=host,
                        listener=self.listener.name, reason="too many connections")
            stream.write(b"* BYE Too many connections\r\n")
            stream.close()
            return
        conn = Connection(stream, self.services, self.listener, conn_id=conn_id, peer=host)
        self._conns.add(conn)
        self._per_ip[host] += 1
        try:
            if self._closing:
                conn.request_shutdown()
            await conn.run()
        finally:
            self._conns.discard(conn)
            self._per_ip[host] -= 1
            if self._per_ip[host] <= 0:
                del self._per_ip[host]

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; BYE to sessions between commands, let commands in
        flight finish for up to ``grace`` seconds, then cancel the rest."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.request_shutdown()
        tasks = set(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=max(grace, 1.0))


async def start(listener: Listener, services: Services) -> ImapListener:
    """Bind ``listener`` and serve IMAP on it (RFC 3501); returns its handle.

    A socket in ``services.listen_sockets`` under the listener's name is
    served instead of binding address and port.  Raises ``OSError`` when the
    address cannot be bound.
    """
    handle = ImapListener(listener, services)
    await handle._start()
    return handle
