"""What every process of the daemon does the same way: its event loop, signals,
systemd readiness, the start-up heap, and running one ``App`` until told to stop.

uvloop is chosen here and nowhere else (``run``: ``asyncio.Runner(loop_factory=
...)``, no global policy), so tests and the admin CLI run on the stock loop.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
import uvloop

from mailserver import log as logsetup
from mailserver.app import App
from mailserver.config import Config
from mailserver.config.loading import load, with_data_dir
from mailserver.errors import MailserverError

log = structlog.get_logger("mailserver.daemon")

#: Extra seconds, past the grace period, that ``App.stop`` may take before we give up.
STOP_SLACK = 5.0
#: What a failed start raises: a store error, a bind or file error, a bad certificate.
START_ERRORS = (MailserverError, OSError, ssl.SSLError)


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on a fresh uvloop event loop; its result (the exit status)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


class Notifier:
    """systemd's readiness protocol (sd_notify(3)): datagrams to ``$NOTIFY_SOCKET``.

    A path, or an abstract socket spelt with a leading ``@``.  Without the
    variable every call is a no-op, so the daemon runs the same outside systemd.
    """

    def __init__(self, address: str | None) -> None:
        self.address: str | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address

    @classmethod
    def from_environ(cls) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET`` (a no-op one when it is unset)."""
        return cls(os.environ.get("NOTIFY_SOCKET"))

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if sent.  Never raises."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:
            # Readiness is a courtesy to the supervisor: not being able to say
            # it must not stop the mail server.
            log.warning("sd_notify_failed", error=str(exc))
            return False
        return True


def on_stop_signals(stop: asyncio.Event, *, force: Callable[[], None] | None,
                    logger: Any = log) -> None:
    """SIGTERM/SIGINT set ``stop`` (logged ``shutdown_requested``).

    A repeat: with ``force``, log ``shutdown_forced``, call ``force`` (the
    supervisor SIGKILLs its workers) and exit at once with 128 + signal (every
    reply already sent is fsynced, so nothing acknowledged is lost); without
    it the repeat is ignored (a worker: the supervisor escalates itself).
    """
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            logger.info("shutdown_requested", signal=name)
            stop.set()
        elif force is not None:
            logger.warning("shutdown_forced", signal=name)
            force()
            logsetup.flush_all()  # os._exit skips atexit
            os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


def reread_config(config: Config) -> Config:
    """The configuration file of ``config`` read again (SIGHUP), with the same
    data directory (it cannot move under a running daemon, and ``--data-dir``
    may have set it).  ``config`` itself when it has no file.  Raises
    ``ConfigError``."""
    if config.source is None:
        return config
    return with_data_dir(load(config.source), config.data_dir)


def on_reload_signal(reload: Callable[[], Awaitable[object]], logger: Any = log) -> None:
    """SIGHUP runs ``reload()`` as a task (one at a time: a SIGHUP during a
    reload runs it once more after).  A failure is logged (``reload_failed``),
    never fatal: the daemon keeps serving with what it had.  The callers log
    ``config_reloaded`` at level warning, so that it shows whatever level the
    new configuration sets."""
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"task": None, "again": False}

    async def run() -> None:
        while True:
            state["again"] = False
            try:
                await reload()
            except Exception as exc:
                logger.error("reload_failed", error=str(exc), error_type=type(exc).__name__)
            if not state["again"]:
                break
        state["task"] = None

    def on_signal() -> None:
        if state["task"] is not None:
            state["again"] = True
            return
        state["task"] = loop.create_task(run(), name="reload")

    loop.add_signal_handler(signal.SIGHUP, on_signal)


def freeze_startup_heap() -> None:
    """Move everything start-up made (modules, configuration, tables) out of the
    cyclic collector's view (``gc.freeze``): it lives as long as the process,
    and a full collection would walk all of it again each time (~25 ms per
    pass in a worker, bench/RESULTS.md).  Call once serving begins."""
    gc.collect()
    gc.freeze()


async def stop_app(app: App, grace: float) -> bool:
    """``App.stop(grace)`` with a hard deadline; False if it did not finish in time."""
    try:
        async with asyncio.timeout(grace + STOP_SLACK):
            await app.stop(grace)
    except TimeoutError:
        log.error("shutdown_timeout", grace=grace)
        return False
    return True


async def serve_app(app: App, stop: asyncio.Event,
                    ready: Callable[[App], Awaitable[None]],
                    stopping: Callable[[], object] = lambda: None) -> bool | None:
    """Start ``app``, await ``ready(app)``, wait for ``stop``, call ``stopping()``,
    stop ``app`` (``limits.shutdown_grace``): whether the stop was clean, or
    None if the start failed (logged ``start_failed``)."""
    try:
        await app.start()
    except START_ERRORS as exc:
        log.error("start_failed", error=str(exc), error_type=type(exc).__name__)
        return None
    try:
        await ready(app)
        await stop.wait()
    finally:
        stopping()
        clean = await stop_app(app, app.config.limits.shutdown_grace)
    return clean
