"""``workers = 1``: this process serves, with no supervisor.

Life of the process (``run_single``):

1. ``App.start()`` opens the store, makes TLS and binds every listener (each
   logs ``listener_started`` with its real port).
2. With ``demo_account = true`` a demo account is ensured and a friendly block
   with host, ports and credentials is printed on stdout.
3. ``READY=1`` goes to systemd (``sd_notify``, when ``NOTIFY_SOCKET`` is set).
4. SIGHUP: the configuration file is read again and the log settings, the
   TLS certificate and the DKIM keys reloaded (``App.reload``), without
   dropping a connection.
5. SIGTERM or SIGINT: ``STOPPING=1``; the listeners stop accepting, work in
   flight gets ``limits.shutdown_grace`` seconds (``App.stop``), the store is
   closed, exit status 0.  A second signal exits at once: every reply we
   already sent is fsynced, so nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import os

import structlog

from mailserver.app import App
from mailserver.config import Config
from mailserver.counters import LocalCounters
from mailserver.counters.admin_socket import serve_admin
from mailserver.process import lifecycle
from mailserver.process.demo import ensure_demo_account, print_banner

log = structlog.get_logger("mailserver.daemon")


async def run_single(config: Config) -> int:
    """Serve ``config`` in this process until SIGTERM/SIGINT; the exit status."""
    stop = asyncio.Event()
    lifecycle.on_stop_signals(stop, force=lambda: None)
    notifier = lifecycle.Notifier.from_environ()
    servers: list[asyncio.AbstractServer] = []

    async def ready(app: App) -> None:
        # ``mailserver limits`` talks to the counters as it would to a supervisor.
        assert app.services is not None
        if isinstance(app.services.counters, LocalCounters):
            servers.append(await serve_admin(config.data_dir / "run", app.services.counters))
        demo = await ensure_demo_account(config, app.store) if config.demo_account else None
        if config.demo_account:
            print_banner(config, {name: app.port(name) for name in app.listeners}, demo)
        lifecycle.freeze_startup_heap()
        notifier.send("READY=1", f"STATUS=serving {len(app.listeners)} listeners",
                      f"MAINPID={os.getpid()}")
        log.info("server_ready", listeners=len(app.listeners), pid=os.getpid())

    app = App(config)

    async def reload() -> None:
        parts = await app.reload(lifecycle.reread_config(config))
        log.warning("config_reloaded", parts=parts)

    lifecycle.on_reload_signal(reload)
    clean = await lifecycle.serve_app(
        app, stop, ready,
        stopping=lambda: notifier.send("STOPPING=1", "STATUS=shutting down"))
    for server in servers:
        server.close()
    if clean is None:
        return 1
    log.info("server_stopped", clean=clean)
    return 0 if clean else 1
