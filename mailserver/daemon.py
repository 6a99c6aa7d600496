"""The daemon: run the ``App`` until a signal, with systemd readiness and a demo account.

Life of a process (``serve``):

1. Logging is configured from ``config.log``; the event loop is uvloop's.
   This is the only place uvloop is chosen (``asyncio.Runner(loop_factory=...)``,
   no global policy), so tests and the admin CLI run on the stock loop.
2. ``App.start()`` opens the store, makes TLS and binds every listener (each
   logs ``listener_started`` with its real port).
3. With ``demo_account = true`` a demo account is ensured and a friendly block
   with host, ports and credentials is printed on stdout.
4. ``READY=1`` goes to systemd (``sd_notify``, when ``NOTIFY_SOCKET`` is set).
5. SIGTERM or SIGINT: ``STOPPING=1``; the listeners stop accepting, work in
   flight gets ``limits.shutdown_grace`` seconds (``App.stop``), the store is
   closed, exit status 0.  A second signal exits at once: every reply we
   already sent is fsynced, so nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import signal
import socket
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import structlog
import uvloop

from mailserver import log as logsetup
from mailserver.app import App
from mailserver.auth.passwords import hash_async
from mailserver.config import Config, worker_count
from mailserver.errors import MailserverError
from mailserver.fsutil import write_atomic
from mailserver.store.store import Store

log = structlog.get_logger("mailserver.daemon")

#: Name of the file, in ``data_dir``, that keeps the demo credentials (mode 0600).
DEMO_CREDENTIALS = "demo-credentials"
#: Local part of the demo account.
DEMO_LOCAL_PART = "demo"
#: Domain used for the demo account when the config lists none.
DEMO_DOMAIN = "example.test"
#: Extra seconds, past the grace period, that ``App.stop`` may take before we give up.
_STOP_SLACK = 5.0


# -- sd_notify ---------------------------------------------------------------------


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


# -- demo account ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoAccount:
    address: str
    password: str
    created: bool  # made by this start (so the password is worth printing)
    path: Path  # the credentials file


def _read_credentials(path: Path) -> tuple[str, str] | None:
    try:
        fields = dict(
            line.split("=", 1) for line in path.read_text("utf-8").splitlines() if "=" in line
        )
    except FileNotFoundError:
        return None
    if "user" in fields and "password" in fields:
        return fields["user"], fields["password"]
    return None


async def ensure_demo_account(config: Config, store: Store) -> DemoAccount | None:
    """Make sure the demo account exists; return it (None if it cannot be vouched for).

    The credentials file is written (synced) *before* the account, so a crash
    in between is repaired on the next start from the file.  An account made
    by hand under the demo address is left alone: we do not know its password.
    """
    path = config.data_dir / DEMO_CREDENTIALS
    saved = await asyncio.to_thread(_read_credentials, path)
    if saved is not None:
        address, password = saved
        created = False
    else:
        domain = config.domains[0] if config.domains else DEMO_DOMAIN
        address = f"{DEMO_LOCAL_PART}@{domain}"
        if store.get_account(address) is not None:
            log.warning("demo_account_unknown_password", user=address, file=str(path))
            return None
        password = secrets.token_urlsafe(12)
        await asyncio.to_thread(
            write_atomic, path, f"user={address}\npassword={password}\n".encode(), 0o600
        )
        created = True
    if store.get_account(address) is None:
        domain = address.rpartition("@")[2]
        if not store.is_local_domain(domain):
            await store.add_domain(domain)
        await store.add_account(address, await hash_async(password))
        created = True
        log.info("demo_account_created", user=address)
    return DemoAccount(address=address, password=password, created=created, path=path)


_TLS_LABEL = {"none": "plain", "starttls": "STARTTLS", "implicit": "TLS"}


def print_banner(cfg: Config, ports: Mapping[str, int], demo: DemoAccount | None,
                 out: TextIO | None = None) -> None:
    """The friendly block on stdout: where to connect and with which credentials.

    ``ports``: the bound port of each listener, by name."""
    out = out or sys.stdout
    lines = ["", f"mailserver is running on {cfg.hostname} (data in {cfg.data_dir})"]
    for listener in cfg.listeners:
        lines.append(
            f"  {listener.name:<12} {listener.protocol:<10} {listener.address}:"
            f"{ports[listener.name]:<6} {_TLS_LABEL[listener.tls]}"
        )
    if demo is not None:
        lines.append(f"  user         {demo.address}")
        if demo.created:
            lines.append(f"  password     {demo.password}")
            lines.append(f"               (also saved in {demo.path})")
        else:
            lines.append(f"  password     see {demo.path}")
    if cfg.tls.cert_file is None:
        lines.append("  the TLS certificate is self-signed: accept it in your mail client")
    lines.append("")
    out.write("\n".join(lines) + "\n")
    out.flush()


# -- serve -------------------------------------------------------------------------


def freeze_startup_heap() -> None:
    """Move everything start-up made (modules, configuration, tables) out of the
    cyclic collector's view (``gc.freeze``): it lives as long as the process,
    and a full collection would walk all of it again each time (~25 ms per
    pass in a worker, bench/RESULTS.md).  Call once serving begins."""
    gc.collect()
    gc.freeze()


async def run(config: Config) -> int:
    """Start the app, wait for SIGTERM/SIGINT, shut down; the process exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("shutdown_forced", signal=name)
            logsetup.flush_all()  # os._exit skips atexit
            os._exit(128 + signum)
        log.info("shutdown_requested", signal=name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    notifier = Notifier.from_environ()
    app = App(config)
    try:
        await app.start()
    except (MailserverError, OSError, ssl.SSLError) as exc:
        log.error("start_failed", error=str(exc), error_type=type(exc).__name__)
        return 1

    try:
        demo = await ensure_demo_account(config, app.store) if config.demo_account else None
        if config.demo_account:
            print_banner(config, {name: app.port(name) for name in app.listeners}, demo)
        freeze_startup_heap()
        notifier.send("READY=1", f"STATUS=serving {len(app.listeners)} listeners",
                      f"MAINPID={os.getpid()}")
        log.info("server_ready", listeners=len(app.listeners), pid=os.getpid())
        await stop.wait()
    finally:
        notifier.send("STOPPING=1", "STATUS=shutting down")
        stopped = await _shutdown(app, config.limits.shutdown_grace)
    log.info("server_stopped", clean=stopped)
    return 0 if stopped else 1


async def _shutdown(app: App, grace: float) -> bool:
    """``App.stop(grace)`` with a hard deadline; False if it did not finish in time."""
    try:
        async with asyncio.timeout(grace + _STOP_SLACK):
            await app.stop(grace)
    except TimeoutError:
        log.error("shutdown_timeout", grace=grace)
        return False
    return True


def serve(config: Config) -> int:
    """Run the daemon until signalled; return the exit status.

    ``workers = 1``: this process serves, on a uvloop event loop.  More: this
    process becomes the supervisor (``supervise``) of that many workers, on a
    uvloop event loop too: it serves every worker's writes (the writer service).
    """
    logsetup.configure(config.log)
    workers = worker_count(config)
    log.info("server_starting", pid=os.getpid(), config=str(config.source or "<built-in>"),
             data_dir=str(config.data_dir), workers=workers)
    if workers > 1:
        from mailserver.workers import supervise  # the supervisor: only in this mode

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(supervise(config, workers))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(config))
