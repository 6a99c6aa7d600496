"""A worker's side of the supervisor's counter service (``Counters``).

One unix stream connection, opened at start.  Requests are written at once
(no buffering across awaits); answers are matched with a FIFO of futures.
If the service goes away (the supervisor is gone, so this worker is about
to stop), the counters fail open: connections are admitted and failed
logins get the base delay, rather than refusing every client.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import cast

import structlog

from mailserver.config import Limits
from mailserver.counters import wire

log = structlog.get_logger("mailserver.counters")

#: Bound on one answer (seconds): the service answers from memory at once,
#: so only a supervisor that hangs or is gone gets near it.
ANSWER_TIMEOUT = 5.0
#: Slots asked for at once (one used, the rest spare) and the most spares
#: kept per (scope, client IP); see ``counters/__init__.py``.
WANT = 4
#: Spares unused this long (seconds) go back to the service.
SPARE_TTL = 1.0


class _Link(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self._buf = b""
        self.closing = False  # our own close: not worth a warning

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            if self.waiting:
                fut = self.waiting.popleft()
                if not fut.done():
                    fut.set_result(line)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closing:
            log.warning("counters_service_gone")
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_result(b"")


class RemoteCounters:
    """``Counters`` kept by the supervisor (``open``; ``close``)."""

    def __init__(self, link: _Link, limits: Limits) -> None:
        self._link = link
        self._loop = asyncio.get_running_loop()
        self._base_delay = limits.auth_failure_delay
        #: (scope, ip) -> spare slots this worker holds, and when one was last used.
        self._spares: dict[tuple[str, str], int] = {}
        self._spare_used: dict[tuple[str, str], float] = {}
        #: (scope, ip) -> new connections the service let us admit on spares without
        #: asking (the connection rate, counted there already); -1: no limit.
        self._credit: dict[tuple[str, str], int] = {}
        self._sweep: asyncio.TimerHandle | None = None

    @classmethod
    async def open(cls, run_dir: Path, limits: Limits) -> RemoteCounters:
        """Connect to ``run_dir/counters.stream``.  Raises ``OSError``."""
        _, link = await asyncio.get_running_loop().create_unix_connection(
            _Link, str(run_dir / wire.SERVICE_NAME))
        return cls(link, limits)

    def reconfigure(self, limits: Limits) -> None:
        """SIGHUP in a worker: forget the rate credit the service gave under
        the old limits (an unlimited "-1" would outlive a new rate); spare
        slots stay.  The service's own limits are the supervisor's to reload."""
        self._credit.clear()
        self._base_delay = limits.auth_failure_delay

    def _ask(self, request: bytes) -> asyncio.Future[bytes] | None:
        link = self._link
        if link.transport is None:
            return None
        fut: asyncio.Future[bytes] = self._loop.create_future()
        link.waiting.append(fut)
        link.transport.write(request)
        return fut

    async def acquire(self, scope: str, ip: str, max_total: int, max_per_ip: int) -> bool:
        """``Counters.acquire``: a spare slot if this worker holds one, else one round trip.

        Fails open (True) when the service cannot be reached.
        """
        key = (scope, ip)
        spare = self._spares.get(key, 0)
        credit = self._credit.get(key, 0)
        if spare and credit:  # no round trip: a slot and a rate credit given before
            self._take_spare(key, spare)
            if credit > 0:
                self._credit[key] = credit - 1
            return True
        if spare:  # a slot but no rate credit left: ask for the rate only
            return await self._rate_admit(key, max_total, max_per_ip)
        fut = self._ask(wire.acquire(scope, ip, max_total, max_per_ip, WANT))
        if fut is None:
            return True
        try:
            taken_s, _, credit_s = (await self._answer(fut)).partition(b" ")
            taken, credit = int(taken_s), int(credit_s or 0)
        except ValueError:
            return True  # the service is gone: fail open
        if taken > 1:
            self._keep_spares(key, taken - 1)
        if taken:
            self._credit[key] = credit
        return taken > 0

    async def _rate_admit(self, key: tuple[str, str], max_total: int, max_per_ip: int) -> bool:
        """One round trip to count a connection on a spare slot (and get new credit)."""
        fut = self._ask(wire.rate_admit(key[1]))
        if fut is None:
            return True
        try:
            ok_s, _, credit_s = (await self._answer(fut)).partition(b" ")
            ok, credit = int(ok_s), int(credit_s or 0)
        except ValueError:
            return True  # the service is gone: fail open
        if not ok:
            return False
        spare = self._spares.get(key, 0)
        if spare:
            self._take_spare(key, spare)
            self._credit[key] = credit
            return True
        # Our spare went back while we asked: take a slot the usual way (this counts
        # the connection in the rate a second time: errs towards the limit).
        fut = self._ask(wire.acquire(key[0], key[1], max_total, max_per_ip, 1))
        return fut is None or (await self._answer(fut))[:1] != b"0"

    def _take_spare(self, key: tuple[str, str], spare: int) -> None:
        if spare == 1:
            del self._spares[key]
        else:
            self._spares[key] = spare - 1
        self._spare_used[key] = self._loop.time()

    def _keep_spares(self, key: tuple[str, str], n: int) -> None:
        self._spares[key] = self._spares.get(key, 0) + n
        self._spare_used[key] = self._loop.time()
        if self._sweep is None:
            self._sweep = self._loop.call_later(SPARE_TTL, self._return_idle_spares)

    def _return_idle_spares(self) -> None:
        """Give back the spares unused for ``SPARE_TTL`` seconds (one message per key)."""
        self._sweep = None
        cutoff = self._loop.time() - SPARE_TTL
        transport = self._link.transport
        for key in [k for k, used in self._spare_used.items() if used <= cutoff]:
            del self._spare_used[key]
            self._credit.pop(key, None)
            n = self._spares.pop(key, 0)
            if n and transport is not None:
                transport.write(wire.release(key[0], key[1], n))
        if self._spare_used:
            self._sweep = self._loop.call_later(SPARE_TTL, self._return_idle_spares)

    @staticmethod
    async def _answer(fut: asyncio.Future[bytes]) -> bytes:
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                # shield: a timeout must not cancel the future the FIFO holds.
                return await asyncio.shield(fut)
        except TimeoutError:
            log.warning("counters_answer_timeout")
            return b""

    def release(self, scope: str, ip: str) -> None:
        """``Counters.release``: kept as a spare for the same client when this worker had
        spares for it, else sent to the service (no answer awaited).
        """
        key = (scope, ip)
        if key in self._spare_used and self._spares.get(key, 0) < WANT:
            self._keep_spares(key, 1)  # this client had spares: it may well come back
            return
        transport = self._link.transport
        if transport is not None:
            transport.write(wire.release(scope, ip))

    async def auth_failure(self, ip: str) -> float:
        """``Counters.auth_failure``: the service's delay in seconds; the base delay
        (``limits.auth_failure_delay``) when the service cannot answer.
        """
        fut = self._ask(wire.auth_failure(ip))
        answer = b"" if fut is None else await self._answer(fut)
        try:
            return float(answer)
        except ValueError:
            return self._base_delay

    async def rate(self, checks: tuple[tuple[str, int, str], ...], n: int = 1) -> bool:
        """``Counters.rate``: one round trip; fails open (True) when the service is gone."""
        fut = self._ask(wire.rate(checks, n))
        answer = b"" if fut is None else await self._answer(fut)
        return answer[:1] != b"0"

    def send(self, data: bytes) -> bool:
        """Write request lines that have no answer (mail-flow ``E`` lines); False
        when the service is gone (they are dropped)."""
        transport = self._link.transport
        if transport is None:
            return False
        transport.write(data)
        return True

    async def close(self) -> None:
        """``Counters.close``: stop the spare sweep and close the socket (the service
        then releases every slot this worker held).
        """
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._link.closing = True
        transport = self._link.transport
        if transport is not None:
            transport.close()


def ask_service(run_dir: Path, request: bytes, timeout: float = 5.0) -> bytes:
    """One request to a running daemon's counter service, blocking (admin tools):
    the answer line without its newline.  Raises ``ConnectionError`` (or another
    ``OSError``) when no daemon serves ``run_dir/counters.stream``."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(run_dir / wire.SERVICE_NAME))
        s.sendall(request)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the counter service closed the connection")
            buf += chunk
    return buf[:-1]
