"""A loopback HTTPS server for tests that fetch or post over HTTPS (MTA-STS
policies, TLS-RPT reports): an aiohttp application on 127.0.0.1, a
self-signed certificate for the name the client asks for, trusted by
pointing the client at the certificate file."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from mailserver.tls import make_self_signed


@asynccontextmanager
async def loopback_https(app: web.Application, name: str, cert: Path,
                         key: Path) -> AsyncIterator[int]:
    """Serve ``app`` over HTTPS with a new certificate for ``name`` written to
    ``cert``/``key`` (the client's trust anchor); yields the port."""
    make_self_signed(name, cert, key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()
