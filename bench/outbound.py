"""Part 2 of issue #5 §2.2: outbound relay, messages queued -> accepted by ``smtp-sink``.

Both sides hold ``count`` messages for a remote domain in their queue, are
released at once, and the clock runs from the release until ``smtp-sink``
has received every one of them:

* **ours**: a daemon of its own (``RelayOurs``) whose ``[outbound.smart_host]``
  is the sink (``tls = "none"``).  While it is stopped the bench fills its
  queue in-process through ``QueueManager.enqueue`` (the path SMTP submission
  takes after DATA) and *holds* the messages by moving their schedule entries
  a week ahead; then the daemon is started and the release is what
  ``mailserver queue flush`` does: ``Store.queue_reschedule`` to now, whose
  commit wakes the daemon's scheduler through the store's change feed.
* **Postfix**: a throwaway instance of its own (``RelayPostfix``) with
  ``relayhost = [127.0.0.1]:<sink>`` and ``defer_transports = smtp``, filled
  by ``smtp-source`` through its smtpd (relay permitted from loopback); the
  messages wait in the deferred queue until ``postqueue -c DIR -f``, whose
  flush request overrides ``defer_transports`` (postqueue(1)).

The sink is one ``smtp-sink -c`` for the whole part: its running counter
(``sess=.. quit=.. mesg=N``, updated when "." is received) is read from its
stdout.  Without the Postfix tools (a bare box, the smoke test) a minimal
aiosmtpd sink stands in.  Our smart host is an address literal, which our
queue still asks the resolver about; a stub DNS server on loopback answers
NXDOMAIN so that no query leaves the machine.

After the clock stops each side's queue is waited empty (removals after the
250s) so that the next round starts clean.  CPU is the server's process tree,
release to last message, per message.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import cpu_seconds, median, wait_port
from bench.servers import Ours, Postfix, free_port
from bench.smtpc import make_body

if TYPE_CHECKING:
    from bench.run import Report

HOST = "127.0.0.1"
SENDER = "bench@example.net"
RCPT = "sink@relay.remote.test"
HOLD = 7 * 24 * 3600.0  # long enough that no retry timer of ours fires in a run
_MESG = re.compile(rb"mesg=(\d+)")


# -- the sink ---------------------------------------------------------------------

class Sink:
    """``smtp-sink -c`` on a loopback port, counting the messages it received."""

    def __init__(self) -> None:
        self.port = free_port()
        self.count = 0
        self._changed = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._fallback: Any = None

    async def start(self) -> None:
        if shutil.which("smtp-sink") is None:
            self._start_fallback()
            return
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
        self._proc = await asyncio.create_subprocess_exec(
            "smtp-sink", *user, "-c", "-4", f"{HOST}:{self.port}", "1024",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        self._reader = asyncio.create_task(self._read())
        await wait_port(self.port)

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        tail = b""
        while chunk := await self._proc.stdout.read(65536):
            tail = (tail + chunk)[-256:]
            found = _MESG.findall(tail)
            if found:
                self._set(int(found[-1]))

    def _set(self, n: int) -> None:
        if n > self.count:
            self.count = n
            self._changed.set()

    def _start_fallback(self) -> None:
        from aiosmtpd.controller import Controller

        loop = asyncio.get_running_loop()
        sink = self

        class Counting:
            received = 0  # counted on the controller's thread, handed over as a total

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                self.received += 1
                loop.call_soon_threadsafe(sink._set, self.received)
                return "250 2.0.0 Ok"

        self._fallback = Controller(Counting(), hostname=HOST, port=self.port)
        self._fallback.start()

    async def wait_for(self, total: int, timeout: float) -> None:
        """Until ``count`` >= ``total``; RuntimeError after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while self.count < total:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise RuntimeError(f"smtp-sink has {self.count}/{total} messages after "
                               f"{timeout:.0f} s") from None

    async def stop(self) -> None:
        if self._fallback is not None:
            self._fallback.stop()
            self._fallback = None
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None


class NxDns:
    """A loopback DNS stub answering NXDOMAIN to everything (RFC 1035 §4.1.1 RCODE 3)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import dns.exception
        import dns.message
        import dns.rcode

        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
                reply = dns.message.make_response(dns.message.from_wire(data))
            except (TimeoutError, dns.exception.DNSException):
                continue
            except OSError:
                return
            reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


# -- ours -------------------------------------------------------------------------

class RelayOurs(Ours):
    """Our daemon relaying everything to the sink (smart host, no TLS).

    ``per_domain``: ``[outbound] max_connections_per_domain``, None for the
    shipped default (3); our queue applies it per recipient domain even with a
    smart host.  The total (``max_connections``) stays at its default, 20.
    """

    def __init__(self, workdir: Path, sink_port: int, dns_port: int,
                 per_domain: int | None = None) -> None:
        super().__init__(workdir)
        self.sink_port, self.dns_port, self.per_domain = sink_port, dns_port, per_domain

    def _config(self) -> Path:
        path = super()._config()
        limits = "" if self.per_domain is None else (
            f"[outbound]\nmax_connections_per_domain = {self.per_domain}\n")
        path.write_text(path.read_text() + limits + f"""\
[outbound.smart_host]
host = "{HOST}"
port = {self.sink_port}
tls = "none"
[dns]
resolver_address = "{HOST}"
resolver_port = {self.dns_port}
""")
        return path


async def _fill_ours(store: Any, count: int, size: int) -> list[str]:
    """Queue ``count`` messages (64 in flight: group commit) and hold them."""
    from mailserver.app import resolver_for
    from mailserver.config import LogSettings
    from mailserver.log import configure
    from mailserver.queue.manager import QueueManager
    from mailserver.queue.settings import OutboundSettings
    from mailserver.store.api import LmdbQueue

    configure(LogSettings(level="warning"))  # not a "queued" line per message on stdout
    settings = OutboundSettings()
    queue = QueueManager(LmdbQueue(store), settings, resolver=resolver_for(settings))  # enqueue only
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> str:
        async with sem:
            return await queue.enqueue(SENDER, [RCPT], make_body(size, i))

    ids = await asyncio.gather(*(one(i) for i in range(count)))
    await store.queue_reschedule(ids, time.time() + HOLD, only_later=False)
    return ids


async def _queue_empty(store: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while store.queue_next_due() is not None:
        if time.monotonic() > deadline:
            raise RuntimeError("our queue did not drain")
        await asyncio.sleep(0.05)


async def relay_ours(daemon: RelayOurs, sink: Sink, count: int, size: int,
                     timeout: float) -> dict:
    """One round: fill and hold with the daemon stopped, start it, release, time."""
    from mailserver.store.store import Store

    store = await Store.open(daemon.data_dir)
    try:
        ids = await _fill_ours(store, count, size)
        daemon.start()
        try:
            base = sink.count
            cpu0, t0 = cpu_seconds(daemon.pids), time.perf_counter()
            await store.queue_reschedule(ids, time.time())  # = mailserver queue flush
            await sink.wait_for(base + count, timeout)
            wall = time.perf_counter() - t0
            cpu = cpu_seconds(daemon.pids) - cpu0
            await _queue_empty(store, timeout)
        finally:
            daemon.stop()
    finally:
        await store.close()
    return {"rate": count / wall, "cpu_ms_per_msg": cpu / count * 1000,
            "extra": sink.count - base - count}


# -- Postfix ----------------------------------------------------------------------

class RelayPostfix(Postfix):
    """A throwaway Postfix relaying everything to the sink, holding mail until a flush."""

    def __init__(self, workdir: Path, sink_port: int) -> None:
        super().__init__(workdir, workdir / "vmail", free_port())
        self.sink_port = sink_port

    def configure_relay(self) -> None:
        self.configure([])
        with open(self.etc / "main.cf", "a") as main_cf:
            # defer_transports: "smtp" mail waits until "postqueue -f" (postconf(5)).
            main_cf.write(f"relayhost = [{HOST}]:{self.sink_port}\n"
                          "defer_transports = smtp\n")

    def queued(self, sub: str) -> int:
        return sum(1 for p in (self.dir / "queue" / sub).rglob("*") if p.is_file())

    def flush(self) -> None:
        subprocess.run(["postqueue", "-c", str(self.etc), "-f"], check=True, timeout=60,
                       stdin=subprocess.DEVNULL, capture_output=True)


async def _until(pred: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"postfix: {what} not reached in {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def relay_postfix(pf: RelayPostfix, sink: Sink, count: int, size: int,
                        timeout: float) -> dict:
    """One round: smtp-source into the held queue, flush, time."""
    proc = await asyncio.create_subprocess_exec(
        "smtp-source", "-l", str(size), "-m", str(count), "-s", "20", "-f", SENDER,
        "-t", RCPT, f"{HOST}:{pf.smtp_port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"smtp-source failed: {err.decode()[-300:]}")
    await _until(lambda: pf.queued("deferred") >= count and pf.queued("incoming") == 0
                 and pf.queued("active") == 0, f"{count} messages held", timeout)
    base = sink.count
    cpu0, t0 = cpu_seconds(pf.pids), time.perf_counter()
    pf.flush()
    await sink.wait_for(base + count, timeout)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pf.pids) - cpu0
    await _until(pf.queue_empty, "empty queue", timeout)
    return {"rate": count / wall, "cpu_ms_per_msg": cpu / count * 1000,
            "extra": sink.count - base - count}


# -- the part ---------------------------------------------------------------------


#: Postfix's default_destination_concurrency_limit: sessions to one relayhost.
POSTFIX_CONCURRENCY = 20


async def part2(report: Report, work: Path, rounds: int, quick: bool, reference: bool,
                workers: int) -> None:
    """Outbound relay, 4 KB messages: ours with the shipped connection limits and with
    Postfix's concurrency, and (with ``reference``) Postfix; medians over ``rounds``."""
    count, size = (20 if quick else 2000), 4096
    timeout = 60.0 + count * 0.1
    sink, dns_stub = Sink(), NxDns()
    await sink.start()
    variants = {"default": None, "matched": POSTFIX_CONCURRENCY}
    ours = {k: RelayOurs(work / f"ours-relay-{k}", sink.port, dns_stub.port, per_domain=v)
            for k, v in variants.items()}
    pf = RelayPostfix(work / "postfix-relay", sink.port) if reference else None
    res: dict[str, list[dict]] = {k: [] for k in [*variants, "ref"]}
    try:
        for daemon in ours.values():
            daemon.workers = workers
            await daemon.add_users([])
        if pf is not None:
            pf.configure_relay()
            pf.start()
            await wait_port(pf.smtp_port)
        for _ in range(rounds):
            for k, daemon in ours.items():
                res[k].append(await relay_ours(daemon, sink, count, size, timeout))
            if pf is not None:
                res["ref"].append(await relay_postfix(pf, sink, count, size, timeout))
    finally:
        if pf is not None:
            pf.stop()
        for daemon in ours.values():
            daemon.stop()
        await sink.stop()
        dns_stub.stop()

    def med(side: str, key: str) -> float | None:
        return median([r[key] for r in res[side]]) if res[side] else None

    for k, label in (("default", "default conns"),
                     ("matched", f"{POSTFIX_CONCURRENCY} conns/domain")):
        name = f"[2] relay {size // 1024} KB, {label}"
        # More messages at the sink than queued: a resend, and the rate is flattered.
        extra = sum(r["extra"] for r in res[k]), sum(r["extra"] for r in res["ref"])
        dup = f"; EXTRA at sink: ours {extra[0]}, ref {extra[1]}" if any(extra) else ""
        report.add(f"{name}, delivered", med(k, "rate"), med("ref", "rate"), "msg/s",
                   f"{count} msgs x {rounds}, queued -> smtp-sink{dup}")
        report.add(f"{name}, CPU/msg", med(k, "cpu_ms_per_msg"),
                   med("ref", "cpu_ms_per_msg"), "ms")
