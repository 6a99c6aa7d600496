"""A receiving SMTP server on loopback (aiosmtpd), told how to answer.

``mode``: "accept" (250), "tempfail" (451 to every RCPT), "reject" (550 to
every RCPT); ``rcpt_replies`` overrides per address; ``tempfail_first``
answers 451 to the first N RCPTs then follows ``mode``.  Everything accepted
is recorded in ``received`` (envelope and the exact DATA bytes), and
``wait_for(n)`` waits on an event, not by polling.

For the outbound client's own behaviour on the wire:

* ``ehlo`` False makes the server an old one: EHLO is refused with 502 (RFC
  5321 §4.1.1.1), only HELO works.
* ``pipelining`` advertises PIPELINING (RFC 2920) in the EHLO reply (aiosmtpd
  reads commands line by line, so it serves a pipelined batch correctly).
* ``reads`` holds, per connection, the chunks as the server read them off
  the connection (after TLS): the boundaries of the client's writes, as far
  as loopback TCP keeps them.  ``connections`` counts accepted connections,
  ``closed`` those that ended (``wait_closed(n)``), ``peak`` the most that
  were open at once.
* ``auth``: {user: password} turns on AUTH PLAIN/LOGIN (RFC 4954), required
  before MAIL; ``authenticated`` lists who logged in.
* ``implicit_tls``: TLS from the first byte (RFC 8314) instead of STARTTLS;
  needs ``tls_dir``.  ``cert_name`` is the certificate's host name.
* ``requiretls`` advertises REQUIRETLS (RFC 8689 §3) once the session is
  under TLS and accepts the MAIL parameter; ``Received.requiretls`` says
  whether MAIL carried it.
* ``drop_connections()`` closes every open connection from the server side.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from mailserver.tls import make_self_signed


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    requiretls: bool = False


@dataclass
class Receiver:
    host: str = "127.0.0.1"
    port: int = 0
    mode: str = "accept"
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    tempfail_first: int = 0
    tls_dir: Path | None = None  # offer STARTTLS with a self-signed cert made there
    cert_name: str = "mx.test"
    implicit_tls: bool = False
    ehlo: bool = True
    pipelining: bool = True
    auth: dict[str, str] | None = None
    requiretls: bool = False
    received: list[Received] = field(default_factory=list)
    rcpt_attempts: int = 0
    reads: list[list[bytes]] = field(default_factory=list)
    connections: int = 0
    closed: int = 0
    peak: int = 0
    authenticated: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: asyncio.base_events.Server | None = None
        self._changed = asyncio.Event()
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def cert_path(self) -> Path:
        assert self.tls_dir is not None
        return self.tls_dir / "rx.crt"

    async def start(self) -> int:
        ctx = None
        if self.tls_dir is not None:
            cert, key = self.cert_path, self.tls_dir / "rx.key"
            if not cert.exists():
                make_self_signed(self.cert_name, cert, key)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
        if self.implicit_tls and ctx is None:
            raise ValueError("implicit_tls needs tls_dir")
        handler = _Handler(self)
        kw: dict[str, Any] = {}
        if self.auth is not None:
            kw.update(authenticator=handler.authenticate, auth_required=True)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _RecordingSMTP(self, handler, hostname=self.cert_name,
                                   tls_context=None if self.implicit_tls else ctx,
                                   enable_SMTPUTF8=True, **kw),
            self.host, self.port, ssl=ctx if self.implicit_tls else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def drop_connections(self) -> None:
        for t in list(self._transports):
            t.close()

    async def wait_for(self, n: int, timeout: float = 30.0) -> list[Received]:
        """Wait until ``n`` messages were received; return them."""
        async with asyncio.timeout(timeout):
            while len(self.received) < n:
                self._changed.clear()
                await self._changed.wait()
        return self.received

    async def wait_closed(self, n: int, timeout: float = 30.0) -> None:
        """Wait until ``n`` connections have ended."""
        async with asyncio.timeout(timeout):
            while self.closed < n:
                self._changed.clear()
                await self._changed.wait()

    def _record(self, item: Received) -> None:
        self.received.append(item)
        self._changed.set()


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP, recording what it reads and when connections come and go."""

    def __init__(self, rx: Receiver, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._rx = rx
        if rx.implicit_tls:
            # aiosmtpd only knows STARTTLS; over implicit TLS the line is encrypted
            # from the start, so AUTH may be offered at once.
            self._auth_require_tls = False
        self._reads: list[bytes] | None = None
        self._first_transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._reads is None:  # not the second call after STARTTLS
            self._reads = []
            self._first_transport = transport
            self._rx.reads.append(self._reads)
            self._rx.connections += 1
            self._rx._transports.add(transport)
            self._rx.peak = max(self._rx.peak, len(self._rx._transports))

    async def smtp_MAIL(self, arg: str) -> None:
        # aiosmtpd refuses parameters it does not know: REQUIRETLS is taken off
        # here and remembered for the transaction (RFC 8689 §4.1).
        self._requiretls = False
        if self._rx.requiretls and arg and self._tls_protocol is not None:
            words = arg.split()
            if any(w.upper() == "REQUIRETLS" for w in words[1:]):
                self._requiretls = True
                arg = " ".join([words[0]] + [w for w in words[1:] if w.upper() != "REQUIRETLS"])
        await super().smtp_MAIL(arg)

    def data_received(self, data: bytes) -> None:
        assert self._reads is not None
        self._reads.append(bytes(data))
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._first_transport in self._rx._transports:
            self._rx._transports.discard(self._first_transport)
            self._rx.closed += 1
            self._rx._changed.set()


class _Handler:
    def __init__(self, rx: Receiver) -> None:
        self.rx = rx

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        creds = self.rx.auth or {}
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if creds.get(user) == password:
                self.rx.authenticated.append(user)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        if not self.rx.ehlo:
            return ["502 5.5.1 EHLO not implemented, say HELO"]
        session.host_name = hostname
        if self.rx.pipelining:
            responses.insert(1, "250-PIPELINING")
        if self.rx.requiretls and server._tls_protocol is not None:
            responses.insert(1, "250-REQUIRETLS")
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        rx = self.rx
        rx.rcpt_attempts += 1
        if rx.rcpt_attempts <= rx.tempfail_first:
            return "451 4.3.0 try again later"
        if address in rx.rcpt_replies:
            reply = rx.rcpt_replies[address]
            if not reply.startswith("2"):
                return reply
        elif rx.mode == "tempfail":
            return "451 4.3.0 try again later"
        elif rx.mode == "reject":
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") \
            is not None
        self.rx._record(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                 bytes(envelope.original_content or envelope.content), tls,
                                 getattr(server, "_requiretls", False)))
        return "250 2.0.0 queued"
