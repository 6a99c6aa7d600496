"""Group commit on PostgreSQL (issue #17 §2: "concurrent requests on one node
share a database transaction where the semantics allow it, and every 250/OK
still means committed").

One connection per node writes.  Requests (``submit``) queue while a
transaction commits; the next transaction takes up to ``max_batch`` of them,
each in a savepoint of its own (a request that fails is rolled back alone,
its caller gets its exception, the others go on), and one ``COMMIT`` — one
WAL flush — answers them all.  Results are handed back only after that
commit returned, so an OK given on a result is durable.  That needs a
``synchronous_commit`` that flushes the WAL before COMMIT returns (``on``,
``local``, ``remote_write``, ``remote_apply``): ``start`` refuses ``off``,
where a commit acknowledged could be lost in a crash.

This is the same contract as the LMDB writer (``store/writer.py``): one
synced commit per batch, a request never sees another's failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: ``synchronous_commit`` values under which a returned COMMIT is on the
#: primary's disk (PostgreSQL 15 docs, §20.5.1).
DURABLE = ("on", "local", "remote_write", "remote_apply")


class NotDurable(Exception):
    """The database would acknowledge commits before they are on disk."""


class PgWriter:
    """A node's group-commit writer over one asyncpg connection to ``dsn``."""

    def __init__(self, dsn: str, *, max_batch: int = 64) -> None:
        self.dsn = dsn
        self.max_batch = max_batch
        self._conn: Any = None
        self._queue: list[tuple[Callable[[Any], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Transactions committed and requests answered (the batching's measure).
        self.commits = 0
        self.requests = 0

    async def start(self) -> None:
        """Connect, check durability, start writing.  Raises NotDurable,
        asyncpg/OSError errors."""
        import asyncpg

        self._conn = await asyncpg.connect(self.dsn)
        mode = await self._conn.fetchval("SHOW synchronous_commit")
        if mode not in DURABLE:
            await self._conn.close()
            raise NotDurable(f"synchronous_commit is {mode!r}: a commit could be lost "
                             "after it was acknowledged; set it to on")
        self._task = asyncio.create_task(self._run(), name="pg-writer")

    async def stop(self) -> None:
        """Finish what is queued, then close."""
        task, self._task = self._task, None
        if task is not None:
            self._queue.append((_STOP, asyncio.get_running_loop().create_future()))
            self._wake.set()
            await task
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def submit(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``await fn(conn)`` in the next transaction (a savepoint of its
        own) and return its result once that transaction has committed.
        Raises what ``fn`` raised (its savepoint rolled back), or the commit's
        error (nothing of the batch is committed then)."""
        if self._task is None:
            raise RuntimeError("the writer is not running")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = (self._queue[:self.max_batch],
                                      self._queue[self.max_batch:])
                stop = any(fn is _STOP for fn, _ in batch)
                await self._commit([(fn, f) for fn, f in batch if fn is not _STOP])
                if stop:
                    return

    async def _commit(self, batch: list[tuple[Callable[[Any], Awaitable[Any]],
                                              asyncio.Future[Any]]]) -> None:
        if not batch:
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            async with self._conn.transaction():
                for fn, _ in batch:
                    try:
                        async with self._conn.transaction():  # a savepoint
                            outcomes.append((True, await fn(self._conn)))
                    except Exception as exc:  # this request only
                        outcomes.append((False, exc))
        except Exception as exc:  # the COMMIT itself failed: nobody's change is in
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.commits += 1
        self.requests += len(batch)
        for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)


async def _STOP(_conn: Any) -> None:  # noqa: N802 - a sentinel, never called
    raise AssertionError("the stop sentinel is never run")
