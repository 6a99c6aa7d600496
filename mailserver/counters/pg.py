"""Rates shared by every node of the PostgreSQL store (issue #17 §2, the limits of
issue #11 §3 across machines): ``PgSharedCounters``.

Messages and recipients per IP, first-time recipients per account and failed
logins per IP and per account (``Counters.rate``) are counted in the
database (``store.pg.counters``: check-and-add in one statement, so a limit
of N lets N through however many nodes count at once), all of one call's
windows in one transaction, so that a call that would pass one limit counts
nothing anywhere (as ``RateLimits.take``).  Connection slots (a count of
open connections: it must fall when a node dies) and the AUTH failure delay
stay per node.

The counters' transactions commit without waiting for the WAL flush
(``synchronous_commit = off`` for them alone): a crash may forget the last
few counts, which errs towards letting clients through, and the flush would
add a disk wait to every MAIL and RCPT.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailserver.config import Limits
from mailserver.counters import WINDOWS, LocalCounters
from mailserver.store.pg.counters import PgCounters

#: Seconds between two removals of windows that no longer weigh in.
PRUNE_EVERY = 60.0


class _Over(Exception):
    """A window would pass its limit: roll the call's counts back."""


class PgSharedCounters(LocalCounters):
    """``Counters`` whose rates live in the database of ``pool`` (asyncpg);
    ``limits``/``state_file`` as ``LocalCounters`` (slots and delays);
    ``clock``: POSIX seconds."""

    def __init__(self, limits: Limits, pool: Any, state_file: Path | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(limits, state_file)
        self._pool = pool
        self._clock = clock
        self._windows = {name: PgCounters(seconds) for name, seconds in WINDOWS.items()}
        self._pruned = 0.0

    async def rate(self, checks: tuple[tuple[str, int, str], ...], n: int = 1) -> bool:
        """``Counters.rate`` across nodes: one transaction, all or nothing.
        Raises KeyError for an unknown window, asyncpg's errors."""
        if not checks:
            return True
        now = self._clock()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off")
                for window, limit, key in checks:
                    if not await self._windows[window].count(conn, f"{window}:{key}", now,
                                                             limit, n):
                        raise _Over
                if now - self._pruned >= PRUNE_EVERY:
                    self._pruned = now
                    await self._prune(conn, now)
        except _Over:
            return False
        return True

    async def _prune(self, conn: Any, now: float) -> None:
        """Drop each window kind's rows that no longer weigh in."""
        for name, counters in self._windows.items():
            start = (now // counters.window) * counters.window
            await conn.execute("DELETE FROM counters WHERE name LIKE $1 AND window_start < $2",
                               name + ":%", start - counters.window)

    async def peek(self, window: str, key: str) -> float:
        """The estimated events of ``key`` in ``window`` now (``limits show``, tests)."""
        async with self._pool.acquire() as conn:
            return await self._windows[window].peek(conn, f"{window}:{key}", self._clock())
