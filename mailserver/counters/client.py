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

    @classmethod
    async def open(cls, run_dir: Path, limits: Limits) -> RemoteCounters:
        """Connect to ``run_dir/counters.stream``.  Raises ``OSError``."""
        _, link = await asyncio.get_running_loop().create_unix_connection(
            _Link, str(run_dir / wire.SERVICE_NAME))
        return cls(link, limits)

    def _ask(self, request: bytes) -> asyncio.Future[bytes] | None:
        link = self._link
        if link.transport is None:
            return None
        fut: asyncio.Future[bytes] = self._loop.create_future()
        link.waiting.append(fut)
        link.transport.write(request)
        return fut

    async def acquire(self, scope: str, ip: str, max_total: int, max_per_ip: int) -> bool:
        fut = self._ask(wire.acquire(scope, ip, max_total, max_per_ip))
        if fut is None:
            return True
        return await self._answer(fut) != b"0"

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
        transport = self._link.transport
        if transport is not None:
            transport.write(wire.release(scope, ip))

    async def auth_failure(self, ip: str) -> float:
        fut = self._ask(wire.auth_failure(ip))
        answer = b"" if fut is None else await self._answer(fut)
        try:
            return float(answer)
        except ValueError:
            return self._base_delay

    async def close(self) -> None:
        self._link.closing = True
        transport = self._link.transport
        if transport is not None:
            transport.close()
