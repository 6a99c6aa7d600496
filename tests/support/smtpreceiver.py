"""A receiving SMTP server on loopback (aiosmtpd), told how to answer.

``mode``: "accept" (250), "tempfail" (451 to every RCPT), "reject" (550 to
every RCPT); ``rcpt_replies`` overrides per address; ``tempfail_first``
answers 451 to the first N RCPTs then follows ``mode``.  Everything accepted
is recorded in ``received`` (envelope and the exact DATA bytes), and
``wait_for(n)`` waits on an event, not by polling.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from mailserver.tls import make_self_signed


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool


@dataclass
class Receiver:
    host: str = "127.0.0.1"
    port: int = 0
    mode: str = "accept"
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    tempfail_first: int = 0
    tls_dir: Path | None = None  # offer STARTTLS with a self-signed cert made there
    received: list[Received] = field(default_factory=list)
    rcpt_attempts: int = 0

    def __post_init__(self) -> None:
        self._server: asyncio.base_events.Server | None = None
        self._changed = asyncio.Event()

    async def start(self) -> int:
        ctx = None
        if self.tls_dir is not None:
            cert, key = self.tls_dir / "rx.crt", self.tls_dir / "rx.key"
            if not cert.exists():
                make_self_signed("mx.test", cert, key)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
        handler = _Handler(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="mx.test", tls_context=ctx, enable_SMTPUTF8=True),
            self.host, self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, n: int, timeout: float = 30.0) -> list[Received]:
        """Wait until ``n`` messages were received; return them."""
        async with asyncio.timeout(timeout):
            while len(self.received) < n:
                self._changed.clear()
                await self._changed.wait()
        return self.received

    def _record(self, item: Received) -> None:
        self.received.append(item)
        self._changed.set()


class _Handler:
    def __init__(self, rx: Receiver) -> None:
        self.rx = rx

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
        self.rx._record(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                 bytes(envelope.original_content or envelope.content),
                                 session.ssl is not None))
        return "250 2.0.0 queued"
