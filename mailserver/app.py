"""Composition root: builds the store, TLS and listeners from a ``Config``.

The only module that wires concrete pieces together.  ``App`` is used by the
daemon (``serve``) and by the tests, which run it on ephemeral ports.
"""

from __future__ import annotations

import asyncio

import structlog

from mailserver.config import Config, Listener
from mailserver.services import ListenerHandle, Services
from mailserver.store.store import Store
from mailserver.tls import server_context

log = structlog.get_logger("mailserver.app")


async def _start_listener(listener: Listener, services: Services) -> ListenerHandle:
    if listener.protocol in ("smtp", "submission"):
        from mailserver.smtp.server import start
    elif listener.protocol == "imap":
        from mailserver.imap.server import start
    else:  # config validation makes this unreachable
        raise ValueError(f"unknown protocol {listener.protocol!r}")
    return await start(listener, services)


class App:
    """The running server: store, TLS context, listeners.

    ``await start()`` opens everything and binds every listener (port 0 → an
    ephemeral port, see ``port(name)``); ``await stop()`` shuts down gracefully.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.services: Services | None = None
        self.listeners: dict[str, ListenerHandle] = {}

    @property
    def store(self) -> Store:
        assert self.services is not None, "App not started"
        return self.services.store

    async def start(self) -> None:
        """Open the store, ensure configured domains, make TLS, bind listeners.

        Raises ``MailserverError`` (store), ``OSError`` (bind, TLS files).
        """
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        store = await Store.open(cfg.data_dir, map_size=cfg.store.map_size)
        try:
            for domain in cfg.domains:
                if not store.is_local_domain(domain):
                    await store.add_domain(domain)
            ssl_context = await asyncio.to_thread(server_context, cfg)
            self.services = Services(config=cfg, store=store, ssl_context=ssl_context)
            for listener in cfg.listeners:
                handle = await _start_listener(listener, self.services)
                self.listeners[listener.name] = handle
                log.info(
                    "listener_started",
                    listener=listener.name,
                    protocol=listener.protocol,
                    address=listener.address,
                    port=handle.port,
                    tls=listener.tls,
                )
        except BaseException:
            await self._close_listeners(0)
            await store.close()
            raise

    def port(self, name: str) -> int:
        """The bound port of the listener called ``name`` in the config."""
        return self.listeners[name].port

    async def _close_listeners(self, grace: float) -> None:
        handles = list(self.listeners.values())
        self.listeners.clear()
        await asyncio.gather(*(h.shutdown(grace) for h in handles), return_exceptions=True)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let work in flight finish for up to ``grace`` seconds, close the store."""
        await self._close_listeners(grace)
        if self.services is not None:
            await self.services.store.close()
            self.services = None
