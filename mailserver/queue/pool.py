"""Idle outbound SMTP sessions, kept open briefly for the next message to the same place.

RFC 5321 §4.5.4.1 encourages sending several messages over one connection.
A session goes back into the pool after a transaction that left it in a
known state (the DATA reply was read, or no recipient was accepted); the next
delivery to the same route key takes it, sends RSET (RFC 5321 §4.1.1.5: it
resets the transaction and proves the line is alive) and reuses it.

Bounds: at most ``per_key`` idle sessions per key, each kept ``idle``
seconds, then closed with QUIT.  Idle sessions do not hold the queue's
connection semaphores, so ``idle`` should stay short (seconds): long enough
for a burst of messages queued together, short of the receiver's own idle
timeout (RFC 5321 §4.5.3.2.7 gives servers 5 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

#: Longest a QUIT of an expired session may take, seconds.
QUIT_TIMEOUT = 5.0


@dataclass(eq=False)
class _Idle:
    session: Any
    timer: asyncio.TimerHandle | None = field(default=None)


class ConnectionPool:
    """Idle sessions by route key.

    ``close_session(session)``: coroutine that says QUIT and closes (must not
    raise).  ``idle``: seconds an idle session is kept (0: the pool keeps
    nothing).  ``per_key``: most idle sessions kept per key.
    """

    def __init__(self, close_session: Callable[[Any], Awaitable[None]], idle: float,
                 per_key: int) -> None:
        self._close_session = close_session
        self._idle = idle
        self._per_key = per_key
        self._sessions: dict[Hashable, list[_Idle]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    def take(self, key: Hashable) -> Any | None:
        """An idle session for ``key`` (most recently used first), or None."""
        idle = self._sessions.get(key)
        if not idle:
            return None
        entry = idle.pop()
        if not idle:
            del self._sessions[key]
        if entry.timer is not None:
            entry.timer.cancel()
        return entry.session

    def put(self, key: Hashable, session: Any) -> None:
        """Keep ``session`` for reuse, or close it when the pool is full or off."""
        idle = self._sessions.setdefault(key, [])
        if self._closed or self._idle <= 0 or len(idle) >= self._per_key:
            if not idle:
                del self._sessions[key]
            self._spawn_close(session)
            return
        entry = _Idle(session)
        entry.timer = asyncio.get_running_loop().call_later(self._idle, self._expire, key, entry)
        idle.append(entry)

    def __len__(self) -> int:
        return sum(len(v) for v in self._sessions.values())

    async def close(self) -> None:
        """Close every idle session (QUIT) and wait for closes in progress."""
        self._closed = True
        entries = [e for idle in self._sessions.values() for e in idle]
        self._sessions.clear()
        for e in entries:
            if e.timer is not None:
                e.timer.cancel()
            self._spawn_close(e.session)
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _expire(self, key: Hashable, entry: _Idle) -> None:
        idle = self._sessions.get(key)
        if idle is None or entry not in idle:
            return
        idle.remove(entry)
        if not idle:
            del self._sessions[key]
        self._spawn_close(entry.session)

    def _spawn_close(self, session: Any) -> None:
        async def close() -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(QUIT_TIMEOUT):
                    await self._close_session(session)

        task = asyncio.get_running_loop().create_task(close(), name="smtp-pool-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
