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
   workers never race to create them); starts the writer service.  It is
   closed after the last worker exited, so work in flight in a stopping
   worker still commits.
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

Worker ``i`` logs with ``worker=i``; worker 0 also runs the outbound queue's
scheduler (the queue supports one scheduler per store); every worker may
enqueue, and the store's change feed wakes the scheduler at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import pickle
import signal
import socket
import ssl
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

import structlog
import uvloop

from mailserver import log as logsetup
from mailserver.app import App
from mailserver.config import Config, Listener
from mailserver.daemon import (
    _STOP_SLACK,
    Notifier,
    _shutdown,
    ensure_demo_account,
    freeze_startup_heap,
    print_banner,
)
from mailserver.errors import AlreadyExists, MailserverError
from mailserver.store.store import Store
from mailserver.store.writer_service import WriterService
from mailserver.tls import server_context

log = structlog.get_logger("mailserver.workers")

#: listen(2) backlog of each worker's sockets.
BACKLOG = 1024
#: Restart backoff: first delay, cap, and the lifetime after which it resets (seconds).
RESTART_DELAY = 0.1
RESTART_DELAY_MAX = 10.0
RESTART_RESET_AFTER = 30.0
#: The command a worker runs (a fresh interpreter; see the module docstring).
_WORKER_CODE = "from mailserver.workers import worker_main; raise SystemExit(worker_main())"


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What the supervisor hands a worker on its stdin."""

    config: Config  # listener ports are the real bound ports
    index: int  # 0..N-1; worker 0 runs the outbound queue
    fds: dict[str, int]  # listener name -> this worker's inherited listening socket fd
    ready_fd: int  # write "<index> <pid>\\n" here once listening


# -- sockets -------------------------------------------------------------------------


def bind_listener(listener: Listener, port: int | None = None) -> socket.socket:
    """A listening TCP socket for ``listener`` (on ``port`` if given), as asyncio
    would make it (SO_REUSEADDR; IPv6 sockets IPv6-only), plus SO_REUSEPORT so
    that several such sockets share the port.  Raises ``OSError``."""
    family = socket.AF_INET6 if ipaddress.ip_address(listener.address).version == 6 \
        else socket.AF_INET
    sock = socket.create_server((listener.address, listener.port if port is None else port),
                                family=family, backlog=BACKLOG, reuse_port=True)
    sock.set_inheritable(True)
    return sock


def bind_group(listener: Listener, count: int) -> list[socket.socket]:
    """``count`` SO_REUSEPORT sockets on ``listener``'s address, all on one port:
    with port 0 the first gets an ephemeral port and the others join it.
    Raises ``OSError`` (and closes what it bound)."""
    group: list[socket.socket] = []
    try:
        group.append(bind_listener(listener))
        port = int(group[0].getsockname()[1])
        for _ in range(count - 1):
            group.append(bind_listener(listener, port))
    except OSError:
        for sock in group:
            sock.close()
        raise
    return group


def _bound_config(config: Config, groups: dict[str, list[socket.socket]]) -> Config:
    listeners = tuple(
        dataclasses.replace(lst, port=int(groups[lst.name][0].getsockname()[1]))
        for lst in config.listeners
    )
    return dataclasses.replace(config, listeners=listeners)


# -- the supervisor ------------------------------------------------------------------


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
            sys.executable, "-c", _WORKER_CODE,
            stdin=asyncio.subprocess.PIPE,
            pass_fds=[*fds.values(), self._ready_w],
            env=self._env,
            start_new_session=True,
        )
        assert proc.stdin is not None
        payload = pickle.dumps(spec)
        proc.stdin.write(struct.pack(">I", len(payload)) + payload)
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
        for slot in self.slots:
            if slot.proc is not None and slot.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(signum)

    async def stop(self, timeout: float) -> bool:
        """SIGTERM every worker, wait up to ``timeout`` s, then SIGKILL; True if all exited 0."""
        self.stopping.set()
        for group in self.groups.values():
            for sock in group:
                sock.close()  # the workers' copies close with their listeners
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


async def _prepare_store(config: Config, store: Store) -> Any:
    """Configured domains, the demo account and the self-signed certificate (when
    none is configured), made once by the supervisor: workers racing to create
    them would trip over each other's files."""
    await asyncio.to_thread(server_context, config)
    for domain in config.domains:
        if not store.is_local_domain(domain):
            with contextlib.suppress(AlreadyExists):
                await store.add_domain(domain)
    return await ensure_demo_account(config, store) if config.demo_account else None


async def _open_writer(config: Config) -> tuple[Store, WriterService]:
    """The supervisor's store and the writer service in front of its writer."""
    # The supervisor's loop serves nothing but the writer service: rounds run
    # on it, without a thread hand-over each way per commit.
    store = await Store.open(config.data_dir, map_size=config.store.map_size,
                             new_mail_limit=config.store.new_mail_limit, writer_on_loop=True)
    try:
        return store, await store.start_writer_service()
    except BaseException:
        await store.close()
        raise


async def _close_writer(store: Store | None, service: WriterService | None) -> None:
    if service is not None:
        await service.close()
    if store is not None:
        await store.close()


async def supervise(config: Config, count: int) -> int:
    """Run ``count`` workers until SIGTERM/SIGINT; the process exit status."""
    loop = asyncio.get_running_loop()
    sup: Supervisor | None = None
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("shutdown_forced", signal=name)
            if sup is not None:
                sup.signal_all(signal.SIGKILL)
            logsetup.flush_all()  # os._exit skips atexit
            os._exit(128 + signum)
        log.info("shutdown_requested", signal=name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    groups: dict[str, list[socket.socket]] = {}
    store: Store | None = None
    service: WriterService | None = None
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        for listener in config.listeners:
            groups[listener.name] = bind_group(listener, count)
        config = _bound_config(config, groups)
        store, service = await _open_writer(config)
        demo = await _prepare_store(config, store)
    except (MailserverError, OSError, ssl.SSLError) as exc:
        for group in groups.values():
            for sock in group:
                sock.close()
        await _close_writer(store, service)
        log.error("start_failed", error=str(exc), error_type=type(exc).__name__)
        return 1
    sup = Supervisor(config, groups, count)
    try:
        return await _serve(sup, count, demo, stop)
    finally:
        # After the last worker exited: their last writes went through it.
        await _close_writer(store, service)


async def _serve(sup: Supervisor, count: int, demo: Any, stop: asyncio.Event) -> int:
    """Start the workers, report readiness, wait for ``stop``, stop them."""
    config = sup.config
    notifier = Notifier.from_environ()
    started = asyncio.ensure_future(sup.start())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([started, stopped], return_when=asyncio.FIRST_COMPLETED)
    if not started.done() or not started.result():
        if not started.done():
            started.cancel()
        else:
            log.error("start_failed", error="a worker exited during start")
        await sup.stop(config.limits.shutdown_grace + _STOP_SLACK)
        return 1
    stopped.cancel()
    ports = {lst.name: lst.port for lst in config.listeners}
    if config.demo_account:
        print_banner(config, ports, demo)
    freeze_startup_heap()
    notifier.send("READY=1", f"STATUS=serving {len(ports)} listeners with {count} workers",
                  f"MAINPID={os.getpid()}")
    log.info("server_ready", listeners=len(ports), workers=count, pid=os.getpid())
    await stop.wait()
    notifier.send("STOPPING=1", "STATUS=shutting down")
    clean = await sup.stop(config.limits.shutdown_grace + _STOP_SLACK)
    log.info("server_stopped", clean=clean)
    return 0 if clean else 1


# -- a worker ------------------------------------------------------------------------


def _read_spec(fd: int) -> WorkerSpec:
    def read_exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError("supervisor closed the spec pipe")
            buf += chunk
        return buf

    (size,) = struct.unpack(">I", read_exactly(4))
    spec = pickle.loads(read_exactly(size))  # from our own parent, over a private pipe
    if not isinstance(spec, WorkerSpec):
        raise TypeError("not a WorkerSpec")
    return spec


def _tag_worker(index: int) -> None:
    """Add ``worker=index`` to every log line of this process (all threads)."""

    def add(logger: Any, method: str, event_dict: Any) -> Any:
        event_dict.setdefault("worker", index)
        return event_dict

    processors = list(structlog.get_config()["processors"])
    structlog.configure(processors=[add, *processors])


async def _work(spec: WorkerSpec, sockets: dict[str, socket.socket]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        # Repeats are ignored: the supervisor forwards a SIGTERM that systemd
        # may already have sent us; it escalates with SIGKILL itself.
        if not stop.is_set():
            log.info("shutdown_requested", signal=signal.Signals(signum).name)
            stop.set()

    def on_lifeline() -> None:
        with contextlib.suppress(OSError):
            if os.read(0, 4096):
                return
        loop.remove_reader(0)
        if not stop.is_set():
            log.warning("supervisor_gone")
            stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_reader(0, on_lifeline)

    config = spec.config
    app = App(config, listen_sockets=sockets, run_queue=spec.index == 0, remote_writer=True)
    try:
        await app.start()
    except (MailserverError, OSError, ssl.SSLError) as exc:
        log.error("start_failed", error=str(exc), error_type=type(exc).__name__)
        return 1
    try:
        freeze_startup_heap()
        logsetup.flush_all()  # our lines so far before the supervisor's server_ready
        os.write(spec.ready_fd, f"{spec.index} {os.getpid()}\n".encode("ascii"))
        os.close(spec.ready_fd)
        await stop.wait()
    finally:
        stopped = await _shutdown(app, config.limits.shutdown_grace)
    log.info("worker_stopped", clean=stopped)
    return 0 if stopped else 1


def worker_main() -> int:
    """Entry point of a worker process (see ``_WORKER_CODE``)."""
    spec = _read_spec(0)
    logsetup.configure(spec.config.log)
    _tag_worker(spec.index)
    os.set_blocking(0, False)
    sockets = {name: socket.socket(fileno=fd) for name, fd in spec.fds.items()}
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_work(spec, sockets))
