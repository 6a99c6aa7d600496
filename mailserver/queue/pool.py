"""Outbound SMTP sessions per route: the connection limit, and idle sessions kept for reuse.

A route key names where a session goes: the smart host, or the recipient
domain when delivering by MX (see ``client.route_key``).  Several recipient
domains share one key when they share a smart host, so the limit is on the
connections to the relay, not per domain.

Limit: at most ``per_key`` sessions per key are open at once, counting the
ones in use, the idle ones and the ones being closed (QUIT in flight), so a
receiver never sees more than ``per_key`` connections from us.  A delivery
holds a ``Lease`` (one place under the limit) for as long as it uses its
session; ``lease`` waits for a place, or hands over an idle session, which
already holds one.

Reuse: RFC 5321 §4.5.4.1 encourages sending several messages over one
connection.  A session goes back into the pool (``Lease.keep``) after a
transaction that left it in a known state (the DATA reply was read, or no
recipient was accepted); the next lease for the same key takes it, sends
RSET (RFC 5321 §4.1.1.5: it resets the transaction and proves the line is
alive) and reuses it.  An idle session is kept ``idle`` seconds, then closed
with QUIT; ``idle`` should stay short (seconds): long enough for a burst of
messages queued together, short of the receiver's own idle timeout (RFC 5321
§4.5.3.2.7 gives servers 5 minutes).  Idle sessions do not hold the queue's
total connection semaphore.

Invariant: ``_open[key]`` == leases held + idle sessions + closes in
progress for ``key``, and never exceeds ``per_key``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

#: Longest a QUIT of an expired session may take, seconds.
QUIT_TIMEOUT = 5.0


@dataclass(eq=False)
class _Idle:
    session: Any
    timer: asyncio.TimerHandle | None = field(default=None)


@dataclass(eq=False)
class Lease:
    """One place under the route's connection limit, held while a session is in use.

    ``take()`` gives an idle session of the route (the lease takes over its
    place); call it until it returns None before opening a new session, as
    the lease may hold an idle session's place rather than one of its own.
    ``keep(session)`` hands the session back to the pool when the
    lease ends; without ``keep`` the place is freed, so the caller must have
    closed its session by then.
    """

    key: Hashable
    _pool: ConnectionPool
    _handed: Any | None = None  # the idle session whose place the lease took at once
    _kept: Any | None = None

    def take(self) -> Any | None:
        """An idle session for this route (most recently used first), or None.
        Call it only while the lease holds no live session."""
        if self._handed is not None:
            session, self._handed = self._handed, None
            return session
        session = self._pool._take_idle(self.key)
        if session is not None:
            self._pool._free(self.key)  # its place merges into the lease's own
        return session

    def keep(self, session: Any) -> None:
        self._kept = session


class ConnectionPool:
    """Sessions by route key: a per-key limit and idle sessions for reuse.

    ``close_session(session)``: coroutine that says QUIT and closes (must not
    raise).  ``idle``: seconds an idle session is kept (0: the pool keeps
    nothing).  ``per_key``: most sessions open per key at once (in use, idle
    or closing).
    """

    def __init__(self, close_session: Callable[[Any], Awaitable[None]], idle: float,
                 per_key: int) -> None:
        if per_key < 1:
            raise ValueError("per_key must be at least 1")
        self._close_session = close_session
        self._idle = idle
        self._per_key = per_key
        self._sessions: dict[Hashable, list[_Idle]] = {}
        self._open: dict[Hashable, int] = {}
        self._waiters: dict[Hashable, list[asyncio.Future[None]]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    @contextlib.asynccontextmanager
    async def lease(self, key: Hashable) -> AsyncIterator[Lease]:
        """Wait for a place under ``key``'s limit (or an idle session to take over)."""
        lease = Lease(key, self, await self._acquire(key))
        try:
            yield lease
        finally:
            if lease._handed is not None:  # never taken: back to the pool, place and all
                self._put(key, lease._handed)
            elif lease._kept is not None:
                self._put(key, lease._kept)
            else:
                self._free(key)

    def open_sessions(self, key: Hashable) -> int:
        """Sessions counted against ``key``'s limit (in use, idle or closing)."""
        return self._open.get(key, 0)

    def __len__(self) -> int:
        """Idle sessions, all keys."""
        return sum(len(v) for v in self._sessions.values())

    async def close(self) -> None:
        """Close every idle session (QUIT) and wait for closes in progress."""
        self._closed = True
        for key in list(self._sessions):
            while (session := self._take_idle(key)) is not None:
                self._spawn_close(key, session)
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # -- places under the limit ------------------------------------------------------

    async def _acquire(self, key: Hashable) -> Any | None:
        """A new place (None), or at the limit an idle session together with its place."""
        while True:
            if self._open.get(key, 0) < self._per_key:
                self._open[key] = self._open.get(key, 0) + 1
                return None
            if (session := self._take_idle(key)) is not None:
                return session
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(key, []).append(waiter)
            try:
                await waiter
            finally:
                waiting = self._waiters.get(key, [])
                if waiter in waiting:
                    waiting.remove(waiter)
                if not waiting:
                    self._waiters.pop(key, None)

    def _free(self, key: Hashable) -> None:
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)
        self._wake(key)

    def _wake(self, key: Hashable) -> None:
        # Everyone re-checks; waiters are few (bounded by the queue's connection limits).
        for waiter in self._waiters.pop(key, []):
            if not waiter.done():
                waiter.set_result(None)

    # -- idle sessions -----------------------------------------------------------------

    def _take_idle(self, key: Hashable) -> Any | None:
        """Pop an idle session; its place goes with it."""
        idle = self._sessions.get(key)
        if not idle:
            return None
        entry = idle.pop()
        if not idle:
            del self._sessions[key]
        if entry.timer is not None:
            entry.timer.cancel()
        return entry.session

    def _put(self, key: Hashable, session: Any) -> None:
        """Keep ``session`` (it keeps its place), or close it when reuse is off."""
        if self._closed or self._idle <= 0:
            self._spawn_close(key, session)
            return
        entry = _Idle(session)
        entry.timer = asyncio.get_running_loop().call_later(self._idle, self._expire, key, entry)
        self._sessions.setdefault(key, []).append(entry)
        self._wake(key)  # a waiter at the limit can take it over

    def _expire(self, key: Hashable, entry: _Idle) -> None:
        idle = self._sessions.get(key)
        if idle is None or entry not in idle:
            return
        idle.remove(entry)
        if not idle:
            del self._sessions[key]
        self._spawn_close(key, entry.session)

    def _spawn_close(self, key: Hashable, session: Any) -> None:
        """QUIT in the background; the place is freed when the connection is gone."""
        async def close() -> None:
            try:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(QUIT_TIMEOUT):
                        await self._close_session(session)
            finally:
                self._free(key)

        task = asyncio.get_running_loop().create_task(close(), name="smtp-pool-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
