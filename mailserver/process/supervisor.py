"""Several serving processes: a supervisor and N workers, each with its own listening sockets.

Why: one Python process uses one core.  With ``workers = N`` the daemon is
a supervisor plus N workers, each a full ``App`` (own uvloop event loop,
own ``Store`` handle for reads, own listeners).  Writes go to the one
group-commit writer of the daemon, which the supervisor runs behind its
writer service (``store/writer_service.py``): requests from every worker
share one round and one fsync, and no worker waits on another's LMDB write
lock.  The change feed crosses processes over datagram sockets in
``data_dir/run``, so a message accepted by worker A wakes an IDLE session
on worker B.

Sockets: per listener, the supervisor binds N sockets with ``SO_REUSEPORT``
on the same address and port (socket(7)); worker ``i`` serves socket ``i``
of every listener.  The kernel spreads new connections over the sockets of
such a group by a hash of the 4-tuple, so each worker gets its share (only
sockets of the same effective UID may join a group: no other user's process
can bind the port and take a share).  One shared socket, inherited by every
worker, balanced badly: whichever loop woke first accepted the whole
backlog, and one worker often served every connection of a burst while the
other idled.

Life of the supervisor (``supervise``):

1. Binds every listener's N sockets (``address``/``port``; port 0: the first
   socket gets a real port and the others bind to that same port), before
   any worker exists.
2. Makes the self-signed certificate if needed and opens the store (kept
   open until the end): configured domains, the demo account (so the
   workers never race to create them); starts the writer service and the
   counter service (``counters/service.py``: connection slots and failed
   logins per client IP, for every worker).  They are closed after the last
   worker exited, so work in flight in a stopping worker still commits.
3. Starts the workers as fresh interpreters (``subprocess``, never a bare
   ``fork`` of a process that has threads or an event loop): worker ``i``
   inherits its own sockets only; the rest of the spec (config, index, fd
   numbers) is a length-prefixed pickle on the worker's stdin.  The stdin
   pipe stays open as a lifeline: EOF means the supervisor is gone, and the
   worker shuts down gracefully.  Workers run in their own session, so a
   terminal's Ctrl-C reaches only the supervisor, which decides.
4. When every worker has written "<index> <pid>" on the readiness pipe:
   banner, ``READY=1`` to systemd, ``server_ready``.
5. A worker that exits is restarted with the same index and sockets after a
   backoff (0.1 s doubling to 10 s; reset once a worker has lived 30 s).
   The supervisor keeps its copy of every socket open for this: a dead
   worker's sockets stay listening, so the connections the kernel queued on
   them wait in the backlog for the new worker instead of being reset (closing
   the last copy of a listening socket resets its accept queue).
   The price: while worker ``i`` is down, socket ``i`` still gets its share
   of new connections, which wait until the restart instead of going to a
   live worker.  Acceptable, since a restart takes about a second; only a
   crash loop (backoff up to 10 s) makes those clients wait longer.
   A worker that dies before the first readiness fails the start (exit 1):
   a broken config or certificate would only crash-loop.
6. SIGTERM/SIGINT: ``STOPPING=1``, close our copies of the sockets, SIGTERM
   to every worker (each runs ``App.stop`` with the grace period), wait
   ``shutdown_grace`` + slack, SIGKILL what is left; exit 0 if every worker
   exited 0.  A second signal SIGKILLs the workers at once: every reply they
   sent is already fsynced, so nothing acknowledged is lost.

Metrics: the supervisor empties ``data_dir/run/metrics`` and shares it with
every worker before any of them counts (``mailserver.metrics``: one view
from whichever worker serves ``/metrics``); a worker that exits is marked
dead there, so its open connections leave the gauge.

Worker ``i`` logs with ``worker=i``; worker 0 also runs the outbound queue's
scheduler (the queue supports one scheduler per store); every worker may
enqueue, and the store's change feed wakes the scheduler at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from typing import Any

import structlog

from mailserver import log as logsetup
from mailserver import metrics
from mailserver.config import Config
from mailserver.counters.service import CounterService
from mailserver.process import lifecycle
from mailserver.process.demo import DemoAccount, ensure_demo_account, print_banner
from mailserver.process.sockets import bind_group, bound_config, close_groups
from mailserver.process.worker import WORKER_CODE, WorkerSpec, send_spec
from mailserver.services import ensure_domains
from mailserver.store.api import LmdbDirectory
from mailserver.store.store import Store
from mailserver.store.writer_service import WriterService
from mailserver.tls import server_context

log = structlog.get_logger("mailserver.workers")

#: Directory under ``data_dir/run`` where the processes' metric values meet.
METRICS_DIR = "metrics"

#: Restart backoff: first delay, cap, and the lifetime after which it resets (seconds).
RESTART_DELAY = 0.1
RESTART_DELAY_MAX = 10.0
RESTART_RESET_AFTER = 30.0


class _Slot:
    """One worker index: the current process and its restart history."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self.delay = RESTART_DELAY
        self.ready = asyncio.Event()
        self.exit_codes: list[int] = []


class Supervisor:
    """Starts, watches and stops the workers (see the module docstring)."""

    def __init__(self, config: Config, groups: dict[str, list[socket.socket]],
                 count: int) -> None:
        self.config = config
        self.groups = groups  # listener name -> one socket per worker index
        self.slots = [_Slot(i) for i in range(count)]
        self.stopping = asyncio.Event()
        self.failed = asyncio.Event()  # a worker died before the first readiness
        self._tasks: list[asyncio.Task[None]] = []
        self._ready_r, self._ready_w = os.pipe()
        os.set_blocking(self._ready_r, False)
        self._ready_buf = b""
        self._env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self._started = False

    async def start(self) -> bool:
        """Start every worker; True once all are listening, False if one died first."""
        asyncio.get_running_loop().add_reader(self._ready_r, self._on_ready)
        self._tasks = [asyncio.create_task(self._run_slot(s), name=f"worker-{s.index}")
                       for s in self.slots]
        all_ready = asyncio.ensure_future(asyncio.gather(*(s.ready.wait() for s in self.slots)))
        failed = asyncio.ensure_future(self.failed.wait())
        waiters: list[asyncio.Future[Any]] = [all_ready, failed]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for fut in (all_ready, failed):
            fut.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fut
        self._started = not self.failed.is_set()
        return self._started

    def _on_ready(self) -> None:
        try:
            chunk = os.read(self._ready_r, 4096)
        except BlockingIOError:
            return
        self._ready_buf += chunk
        *lines, self._ready_buf = self._ready_buf.split(b"\n")
        for line in lines:
            index, _, pid = line.decode("ascii", "replace").partition(" ")
            with contextlib.suppress(ValueError, IndexError):
                slot = self.slots[int(index)]
                slot.ready.set()
                log.info("worker_ready", worker=slot.index, worker_pid=int(pid))

    async def _spawn(self, slot: _Slot) -> asyncio.subprocess.Process:
        fds = {name: group[slot.index].fileno() for name, group in self.groups.items()}
        spec = WorkerSpec(config=self.config, index=slot.index, fds=fds, ready_fd=self._ready_w)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER_CODE,
            stdin=asyncio.subprocess.PIPE,
            pass_fds=[*fds.values(), self._ready_w],
            env=self._env,
            start_new_session=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(send_spec(spec))
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        # stdin stays open: the worker's lifeline (EOF = supervisor gone).
        slot.proc, slot.started = proc, time.monotonic()
        log.info("worker_started", worker=slot.index, worker_pid=proc.pid)
        return proc

    async def _run_slot(self, slot: _Slot) -> None:
        while not self.stopping.is_set():
            proc = await self._spawn(slot)
            code = await proc.wait()
            slot.exit_codes.append(code)
            metrics.mark_dead(proc.pid)
            if self.stopping.is_set():
                return
            lived = time.monotonic() - slot.started
            log.error("worker_exited", worker=slot.index, worker_pid=proc.pid, status=code,
                      lived_s=round(lived, 3))
            if not self._started:
                self.failed.set()
                return
            if lived >= RESTART_RESET_AFTER:
                slot.delay = RESTART_DELAY
            # Backoff, cut short by a shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(slot.delay):
                    await self.stopping.wait()
            slot.delay = min(slot.delay * 2, RESTART_DELAY_MAX)

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every worker still running (one that just exited is skipped)."""
        for slot in self.slots:
            if slot.proc is not None and slot.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(signum)

    async def stop(self, timeout: float) -> bool:
        """SIGTERM every worker, wait up to ``timeout`` s, then SIGKILL; True if all exited 0."""
        self.stopping.set()
        close_groups(self.groups)  # the workers' copies close with their listeners
        self.signal_all(signal.SIGTERM)
        procs = [s.proc for s in self.slots if s.proc is not None]
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        clean = True
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            if pending:
                log.error("worker_stop_timeout", workers=len(pending))
                self.signal_all(signal.SIGKILL)
                await asyncio.wait(pending)
                clean = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._ready_r)
        os.close(self._ready_r)
        os.close(self._ready_w)
        return clean and all(p.returncode == 0 for p in procs)


async def _prepare_store(config: Config, store: Store) -> DemoAccount | None:
    """Configured domains, the demo account and the self-signed certificate (when
    none is configured), made once by the supervisor: workers racing to create
    them would trip over each other's files."""
    await asyncio.to_thread(server_context, config)
    await ensure_domains(LmdbDirectory(store), config.domains)
    return await ensure_demo_account(config, store) if config.demo_account else None


class _Services:
    """What the supervisor serves its workers: the store's writer and the counters."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self.writer: WriterService | None = None
        self.counters: CounterService | None = None

    async def open(self, config: Config) -> None:
        # The supervisor's loop serves nothing but these services: rounds run
        # on it, without a thread hand-over each way per commit.
        self.store = await Store.open(config.data_dir, map_size=config.store.map_size,
                                      new_mail_limit=config.store.new_mail_limit,
                                      fill_warning_levels=config.store.fill_warning_levels,
                                      writer_on_loop=True, preallocate=True)
        self.writer = await self.store.start_writer_service()
        self.counters = await CounterService.start(config.data_dir / "run", config.limits,
                                                     config.analytics)

    async def close(self) -> None:
        if self.counters is not None:
            await self.counters.close()
        if self.writer is not None:
            await self.writer.close()
        if self.store is not None:
            await self.store.close()


async def supervise(config: Config, count: int) -> int:
    """Run ``count`` workers until SIGTERM/SIGINT; the process exit status."""
    sup: Supervisor | None = None
    stop = asyncio.Event()

    def force() -> None:
        if sup is not None:
            sup.signal_all(signal.SIGKILL)

    lifecycle.on_stop_signals(stop, force=force, logger=log)

    async def reload() -> None:
        # Our own log settings and the counter service's limits, then each
        # worker reloads itself (App.reload).
        new = lifecycle.reread_config(config)
        logsetup.configure(new.log)
        parts = ["log"]
        if services.counters is not None:
            services.counters.counters.reconfigure(new.limits)
            parts.append("limits")
        if sup is not None:
            sup.signal_all(signal.SIGHUP)
        log.warning("config_reloaded", parts=parts, workers_signalled=sup is not None)

    lifecycle.on_reload_signal(reload, logger=log)
    groups: dict[str, list[socket.socket]] = {}
    services = _Services()
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        # Before anything counts, and before a worker inherits the directory.
        metrics.enable_multiprocess(config.data_dir / "run" / METRICS_DIR)
        for listener in config.listeners:
            groups[listener.name] = bind_group(listener, count)
        config = bound_config(config, groups)
        await services.open(config)
        assert services.store is not None
        demo = await _prepare_store(config, services.store)
    except lifecycle.START_ERRORS as exc:
        close_groups(groups)
        await services.close()
        log.error("start_failed", error=str(exc), error_type=type(exc).__name__)
        return 1
    except BaseException:
        close_groups(groups)
        await services.close()
        raise
    sup = Supervisor(config, groups, count)
    try:
        return await _serve(sup, count, demo, stop)
    finally:
        # After the last worker exited: their last writes went through it.
        await services.close()


async def _serve(sup: Supervisor, count: int, demo: DemoAccount | None,
                 stop: asyncio.Event) -> int:
    """Start the workers, report readiness, wait for ``stop``, stop them."""
    config = sup.config
    timeout = config.limits.shutdown_grace + lifecycle.STOP_SLACK
    notifier = lifecycle.Notifier.from_environ()
    started = asyncio.ensure_future(sup.start())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([started, stopped], return_when=asyncio.FIRST_COMPLETED)
    if not started.done() or not started.result():
        if not started.done():
            started.cancel()
        else:
            log.error("start_failed", error="a worker exited during start")
        await sup.stop(timeout)
        return 1
    stopped.cancel()
    ports = {lst.name: lst.port for lst in config.listeners}
    if config.demo_account:
        print_banner(config, ports, demo)
    lifecycle.freeze_startup_heap()
    notifier.send("READY=1", f"STATUS=serving {len(ports)} listeners with {count} workers",
                  f"MAINPID={os.getpid()}")
    log.info("server_ready", listeners=len(ports), workers=count, pid=os.getpid())
    await stop.wait()
    notifier.send("STOPPING=1", "STATUS=shutting down")
    clean = await sup.stop(timeout)
    log.info("server_stopped", clean=clean)
    return 0 if clean else 1
