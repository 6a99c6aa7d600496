"""The ``http`` listener kind: aiohttp's server on our event loop.

Routes: ``GET /metrics`` (``metrics.py``; HEAD too, as aiohttp adds it to a
GET route); the admin API under ``/api/v1`` (``api/``), over the process's
admin service (``Services.admin``); client autoconfiguration for Thunderbird,
Outlook and Apple devices (``autoconfig.py``).  Anything else is a problem response (RFC 9457, ``problem.py``):
404 for an unknown path, 405 with ``Allow`` for a known path and another
method (RFC 9110 §15.5.6).

The listener base binds (or takes the supervisor's socket: with
``workers = N`` each worker serves its member of the SO_REUSEPORT group, and
every route answers the same whichever worker the kernel picks) and wraps
implicit TLS (``tls = "implicit"``: HTTPS); aiohttp's ``web.Server`` is the
protocol factory.  Connection slots per client IP are not counted: the
listener is meant for loopback (the shipped configurations) or a proxy.
Shutdown: stop accepting, then aiohttp's own (idle keep-alive connections
close at once, requests in flight get the grace period).
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from mailserver import metrics as process_metrics
from mailserver.config import Listener
from mailserver.http import api, autoconfig, dashboard, metrics
from mailserver.http.problem import problem_middleware
from mailserver.listeners.base import ListenerBase
from mailserver.services import Services

log = structlog.get_logger("mailserver.http")


class HttpListener(ListenerBase):
    """A started ``http`` listener (``services.ListenerHandle``)."""

    log = log
    counts_connections = False  # no slots taken (see the module docstring)

    def __init__(self, listener: Listener, services: Services) -> None:
        super().__init__(listener, services)
        store = services.backend.lmdb  # None on PostgreSQL: /metrics alone so far
        self._queue = services.backend.queue
        self._state = metrics.StateCollector(services.config, store)
        app = web.Application(middlewares=[problem_middleware])
        app.router.add_get("/metrics", self._metrics)
        if store is not None:
            autoconfig.add_routes(app, services.config, store.is_local_domain)
        if services.admin is not None:
            app.add_subapp(api.PREFIX, api.application(services.admin, services.flow))
            dashboard.add_routes(app)
        # No access log (a scrape every few seconds is not news); no signal
        # handlers (the process model owns SIGTERM/SIGINT).
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=services.config.limits.shutdown_grace)

    async def start(self) -> None:
        await self._runner.setup()
        await super().start()

    def protocol_factory(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None  # set up in start()
        return server()

    async def _metrics(self, request: web.Request) -> web.Response:
        process_metrics.flush_all()  # this process's tallies; the others flush each second
        if self.services.backend.lmdb is None:  # the database's queue, read here (async)
            self._state.queue_records = await self._queue.queue_list()
        body = await asyncio.to_thread(metrics.exposition, self._state)
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; let requests in flight finish (``grace`` seconds), then close."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        await self._runner.cleanup()
        self.log.info("listener_stopped", listener=self.listener.name)


async def start(listener: Listener, services: Services) -> HttpListener:
    """Bind ``listener`` (protocol "http") and serve it.  Raises ``OSError``."""
    handle = HttpListener(listener, services)
    try:
        await handle.start()
    except BaseException:
        await handle._runner.cleanup()
        raise
    return handle
