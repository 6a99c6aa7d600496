"""One worker process of a multi-process daemon (see ``supervisor.py``).

A worker is a fresh interpreter running ``worker_main``: it reads its
``WorkerSpec`` (a length-prefixed pickle) from stdin, serves a full ``App`` on
the listening sockets it inherited, writes through the supervisor's writer
service and counts connections and failed logins in the supervisor's counter
service.  stdin stays open as a lifeline: EOF means the supervisor is gone,
and the worker shuts down gracefully.  Worker ``i`` logs with ``worker=i``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import struct
from dataclasses import dataclass
from typing import Any

import structlog

from mailserver import log as logsetup
from mailserver.app import App
from mailserver.config import Config
from mailserver.process import lifecycle

log = structlog.get_logger("mailserver.workers")

#: The command a worker runs (a fresh interpreter, never a bare fork of a
#: process that has threads or an event loop).
WORKER_CODE = "from mailserver.process.worker import worker_main; raise SystemExit(worker_main())"


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What the supervisor hands a worker on its stdin."""

    config: Config  # listener ports are the real bound ports
    index: int  # 0..N-1; worker 0 runs the outbound queue
    fds: dict[str, int]  # listener name -> this worker's inherited listening socket fd
    ready_fd: int  # write "<index> <pid>\\n" here once listening


def send_spec(spec: WorkerSpec) -> bytes:
    """The bytes that carry ``spec`` on a worker's stdin."""
    payload = pickle.dumps(spec)
    return struct.pack(">I", len(payload)) + payload


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
    # Repeats are ignored: the supervisor forwards a SIGTERM that systemd may
    # already have sent us; it escalates with SIGKILL itself.
    lifecycle.on_stop_signals(stop, force=None, logger=log)

    def on_lifeline() -> None:
        with contextlib.suppress(OSError):
            if os.read(0, 4096):
                return
        loop.remove_reader(0)
        if not stop.is_set():
            log.warning("supervisor_gone")
            stop.set()

    loop.add_reader(0, on_lifeline)

    async def ready(app: App) -> None:
        lifecycle.freeze_startup_heap()
        logsetup.flush_all()  # our lines so far before the supervisor's server_ready
        os.write(spec.ready_fd, f"{spec.index} {os.getpid()}\n".encode("ascii"))
        os.close(spec.ready_fd)

    app = App(spec.config, listen_sockets=sockets, run_queue=spec.index == 0,
              remote_writer=True, shared_counters=True)

    async def reload() -> None:  # SIGHUP, forwarded by the supervisor
        parts = await app.reload(lifecycle.reread_config(spec.config))
        _tag_worker(spec.index)  # log.configure replaced the processors that tag our lines
        log.warning("config_reloaded", parts=parts)

    lifecycle.on_reload_signal(reload)
    clean = await lifecycle.serve_app(app, stop, ready)
    if clean is None:
        return 1
    log.info("worker_stopped", clean=clean)
    return 0 if clean else 1


def worker_main() -> int:
    """Entry point of a worker process (see ``WORKER_CODE``)."""
    spec = _read_spec(0)
    logsetup.configure(spec.config.log)
    _tag_worker(spec.index)
    os.set_blocking(0, False)
    sockets = {name: socket.socket(fileno=fd) for name, fd in spec.fds.items()}
    return lifecycle.run(_work(spec, sockets))
