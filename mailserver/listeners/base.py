"""One listener base for every protocol: accept, connection limits, TLS, graceful stop.

A kind (``smtp``, ``imap``, ``http``) gives a protocol factory and its
connection objects; the base binds (or serves the socket the supervisor bound
for this worker), wraps implicit TLS, counts connection slots per listener
and per client IP in the shared ``Counters`` (so with several workers a limit
holds across all of them), and stops the way uvicorn does:

1. stop accepting (the listening socket closes at once);
2. ask each connection to finish (``begin_shutdown``: an idle one says
   goodbye now, one in the middle of a command or transaction finishes it);
3. wait up to the grace period for them to go;
4. cut what is left (``abort``) and wait briefly for the cut to land.

Connection limits are checked once per connection, before the greeting; the
kind sends its refusal (``421 4.7.0`` for SMTP, ``* BYE`` for IMAP).  The
same two calls count ``mailserver_connections_total`` (accepted / refused)
and ``mailserver_open_connections`` (``mailserver.metrics``).  The ``http``
kind takes no slots and stops through aiohttp's own shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Protocol

import structlog

from mailserver.config import Listener
from mailserver.counters import Counters
from mailserver.metrics import instruments
from mailserver.services import Services

log = structlog.get_logger("mailserver.listeners")

#: listen(2) backlog: asyncio's default of 100 overflows (SYN retries of 1 s)
#: when a burst of clients connects at once, as MX traffic and smtp-source do.
#: It also applies to a socket bound by the supervisor: serving it calls
#: listen(2) again.
LISTEN_BACKLOG = 1024
#: Bound on an implicit-TLS handshake (seconds).
TLS_HANDSHAKE_TIMEOUT = 30.0
#: After cutting the connections left at the end of the grace period, how
#: long to wait for them to go (seconds).
CLOSE_WAIT = 2.0


class Conn(Protocol):
    """What the base asks of a kind's connection."""

    def begin_shutdown(self) -> None:
        """Finish what is in flight, then close; close at once when idle."""
        ...

    def abort(self) -> None:
        """Close now, without a word."""
        ...

    async def wait_closed(self) -> None:
        """Return once the connection is gone."""
        ...


class ListenerBase:
    """A started listener (``services.ListenerHandle``); kinds subclass it.

    Subclasses give ``protocol_factory`` (one asyncio protocol per accepted
    connection) and call ``acquire_slot``/``release_slot`` around each connection's life.
    """

    #: Seconds past the grace period before connections still open are cut
    #: (SMTP: room for the TLS close_notify after the 421).
    close_slack = CLOSE_WAIT
    #: The kind's logger (``listener_stopped``).
    log = log
    #: Whether the kind takes connection slots (``acquire_slot``), and so
    #: appears in ``mailserver_connections_total`` / ``mailserver_open_connections``.
    counts_connections = True

    def __init__(self, listener: Listener, services: Services) -> None:
        self.listener = listener
        self.services = services
        self.limits = services.config.limits
        self.counters: Counters = services.counters
        self.closing = False
        #: Every open connection, admitted or not.
        self.connections: set[Conn] = set()
        self._admitted: set[Conn] = set()
        self._server: asyncio.Server | None = None
        self._port = 0
        # Metrics, bound once: connections by outcome, open ones by protocol
        # (counted by ``acquire_slot``/``release_slot``).
        if self.counts_connections:
            m = instruments()
            name, protocol = listener.name, listener.protocol
            self._accepted_count = m.connections.labels(name, protocol, "accepted")
            self._refused = m.connections.labels(name, protocol, "refused")
            self._open = m.open_connections.labels(protocol)

    # -- kind hooks --------------------------------------------------------------

    def protocol_factory(self) -> asyncio.BaseProtocol:
        """A new asyncio protocol for one accepted connection; every kind overrides it."""
        raise NotImplementedError

    def reconfigure(self) -> None:
        """After a reload (``App.reload``): new connections get
        ``services.config``'s limits; open ones keep theirs."""
        self.limits = self.services.config.limits

    # -- start ---------------------------------------------------------------------

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        """The context of an implicit-TLS listener (RFC 8314), else None."""
        return self.services.ssl_context if self.listener.tls == "implicit" else None

    async def start(self) -> None:
        """Bind (or serve the supervisor's socket) and start accepting.
        Raises ``OSError``."""
        loop = asyncio.get_running_loop()
        tls = self.tls_context
        timeout = TLS_HANDSHAKE_TIMEOUT if tls is not None else None
        factory: Callable[[], asyncio.BaseProtocol] = self.protocol_factory
        sock = self.services.listen_sockets.get(self.listener.name)
        if sock is not None:  # bound by the supervisor for this worker (process/)
            self._server = await loop.create_server(
                factory, sock=sock, ssl=tls, ssl_handshake_timeout=timeout,
                backlog=LISTEN_BACKLOG)
        else:
            self._server = await loop.create_server(
                factory, self.listener.address, self.listener.port, ssl=tls,
                ssl_handshake_timeout=timeout, backlog=LISTEN_BACKLOG)
        # Read once: after shutdown the server has no sockets left to ask.
        self._port = int(self._server.sockets[0].getsockname()[1])

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when the config said 0)."""
        return self._port

    # -- limits ----------------------------------------------------------------------

    async def acquire_slot(self, conn: Conn, ip: str) -> bool:
        """Track ``conn``; True when a slot was free (``max_connections`` of this
        listener, ``max_connections_per_ip`` of ``ip``, across every worker)."""
        self.connections.add(conn)
        limits = self.limits
        ok = await self.counters.acquire(self.listener.name, ip, limits.max_connections,
                                         limits.max_connections_per_ip)
        if not ok:
            self._refused.inc()
            return False
        if conn not in self.connections:  # gone while we asked
            self.counters.release(self.listener.name, ip)
            return False
        self._admitted.add(conn)
        self._accepted_count.inc()
        self._open.inc()
        if self.closing:  # accepted just before shutdown began: not in its list
            conn.begin_shutdown()
        return True

    def release_slot(self, conn: Conn, ip: str) -> None:
        """Forget ``conn`` and give back its slot (idempotent)."""
        self.connections.discard(conn)
        try:
            self._admitted.remove(conn)
        except KeyError:
            return  # never admitted, or already released
        self._open.dec()
        self.counters.release(self.listener.name, ip)

    # -- stop ----------------------------------------------------------------------

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; ask each connection to finish; after ``grace``
        seconds cut what is left (see the module docstring)."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        conns = list(self.connections)
        for conn in conns:
            conn.begin_shutdown()
        await _wait(conns, grace + self.close_slack)
        for conn in list(self.connections):
            conn.abort()
        await _wait(list(self.connections), CLOSE_WAIT)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), max(grace, 1.0))
        self.log.info("listener_stopped", listener=self.listener.name)


async def _wait(conns: list[Conn], timeout: float) -> None:
    if not conns:
        return
    waits = [asyncio.ensure_future(c.wait_closed()) for c in conns]
    _, pending = await asyncio.wait(waits, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
