"""Starting and stopping an SMTP or submission listener.

``start`` binds the socket and returns a handle; each accepted connection is
an ``adapter.SmtpConnection`` sharing one ``handler.SmtpHooks``.  The listener
keeps the set of its connections: for the connection limits (RFC 5321 §4.5.3
leaves them to us; refused at the greeting with ``421 4.7.0``) and for the
graceful shutdown (uvicorn's order: stop listening, ask each connection to
finish, wait a grace period, then cut what is left).
"""

from __future__ import annotations

import asyncio

import structlog

from mailserver.config import Listener
from mailserver.services import Services
from mailserver.smtp.adapter import ConnectionSettings, SmtpConnection

log = structlog.get_logger("mailserver.smtp")

#: After asking connections to close, how long to wait for them to go (TLS
#: close_notify included) before aborting them.
_CLOSE_WAIT = 2.0
#: listen(2) backlog: asyncio's default of 100 overflows (SYN retries of 1 s)
#: when a burst of clients connects at once, as MX traffic and smtp-source do.
LISTEN_BACKLOG = 1024


class ConnectionRegistry:
    """The connections of one listener, with the per-listener and per-IP limits."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.all: set[SmtpConnection] = set()  # every open connection, admitted or not
        self._admitted: set[SmtpConnection] = set()
        # A plain dict, not a Counter: its __missing__ is a Python call per new IP.
        self._per_ip: dict[str, int] = {}

    def admit(self, conn: SmtpConnection) -> bool:
        """Track ``conn``; True when it is within the limits and may be served."""
        self.all.add(conn)
        ip = conn.peer_ip
        count = self._per_ip.get(ip, 0)
        if len(self._admitted) >= self.max_total or count >= self.max_per_ip:
            return False
        self._admitted.add(conn)
        self._per_ip[ip] = count + 1
        return True

    def release(self, conn: SmtpConnection) -> None:
        """Forget ``conn`` (idempotent)."""
        self.all.discard(conn)
        try:
            self._admitted.remove(conn)
        except KeyError:
            return  # never admitted, or already released
        ip = conn.peer_ip
        count = self._per_ip[ip] - 1
        if count > 0:
            self._per_ip[ip] = count
        else:
            del self._per_ip[ip]


class SmtpListener:
    """A started SMTP/submission listener (``services.ListenerHandle``)."""

    def __init__(self, listener: Listener, server: asyncio.Server, registry: ConnectionRegistry):
        self.listener = listener
        self._server = server
        self._registry = registry
        # Read once: after shutdown the server has no sockets left to ask.
        self._port = int(server.sockets[0].getsockname()[1])

    @property
    def port(self) -> int:
        return self._port

    @property
    def connections(self) -> tuple[SmtpConnection, ...]:
        """The connections open right now (admitted or not)."""
        return tuple(self._registry.all)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; idle connections get ``421 4.3.2`` now, those in DATA
        may finish their transaction for up to ``grace`` seconds; then every
        connection is closed (aborted if it will not go)."""
        self._server.close()
        conns = list(self._registry.all)
        for conn in conns:
            conn.begin_shutdown()
        await self._wait(conns, grace + _CLOSE_WAIT)
        for conn in list(self._registry.all):
            conn.abort()
        await self._wait(list(self._registry.all), _CLOSE_WAIT)
        await self._server.wait_closed()
        log.info("listener_stopped", listener=self.listener.name)

    @staticmethod
    async def _wait(conns: list[SmtpConnection], timeout: float) -> None:
        if not conns:
            return
        waits = [asyncio.ensure_future(c.wait_closed()) for c in conns]
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


async def start(listener: Listener, services: Services) -> SmtpListener:
    """Bind ``listener`` (protocol "smtp" or "submission") and serve it.

    "smtp" is the MX role (RFC 5321): mail for local domains only, no AUTH.
    "submission" is RFC 6409 / RFC 8314: AUTH required (offered under TLS
    only), sender (MAIL FROM and From:) must be the user's own address;
    remote recipients go to ``services.queue`` (451 4.3.0 when it is None).
    ``listener.tls``: "starttls" offers STARTTLS (RFC 3207), "implicit" runs
    TLS from the first byte, "none" neither.  Raises ``OSError`` on bind failure.
    """
    config = services.config
    limits = config.limits
    submission = listener.protocol == "submission"
    settings = ConnectionSettings(
        listener_name=listener.name,
        hostname=config.hostname,
        limits=limits,
        submission=submission,
        starttls_context=services.ssl_context if listener.tls == "starttls" else None,
        implicit_tls=listener.tls == "implicit",
    )
    handler = services.smtp_hooks[listener.name]  # check pipeline + delivery (app.py)
    registry = ConnectionRegistry(limits.max_connections, limits.max_connections_per_ip)
    loop = asyncio.get_running_loop()
    tls = services.ssl_context if listener.tls == "implicit" else None
    sock = services.listen_sockets.get(listener.name)
    if sock is not None:  # bound by the supervisor for this worker (workers.py)
        server = await loop.create_server(
            lambda: SmtpConnection(handler, settings, registry), sock=sock, ssl=tls,
            backlog=LISTEN_BACKLOG,
        )
    else:
        server = await loop.create_server(
            lambda: SmtpConnection(handler, settings, registry),
            host=listener.address, port=listener.port, ssl=tls, backlog=LISTEN_BACKLOG,
        )
    return SmtpListener(listener, server, registry)
