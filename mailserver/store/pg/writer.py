"""Group commit on PostgreSQL (issue #17 §2: "concurrent requests on one node
share a database transaction where the semantics allow it, and every 250/OK
still means committed").

A node writes over ``connections`` connections, each running one transaction
at a time.  Requests (``submit``) queue while the transactions run; the next
free connection takes up to ``max_batch`` of them,
each in a savepoint of its own (a request that fails is rolled back alone,
its caller gets its exception, the others go on), and one ``COMMIT`` — one
WAL flush — answers them all.  Results are handed back only after that
commit returned, so an OK given on a result is durable.  That needs a
``synchronous_commit`` that flushes the WAL before COMMIT returns (``on``,
``local``, ``remote_write``, ``remote_apply``): ``start`` refuses ``off``,
where a commit acknowledged could be lost in a crash.

This is the same contract as the LMDB writer (``store/writer.py``): one
synced commit per batch, a request never sees another's failure.  Unlike
LMDB's single writer, PostgreSQL runs transactions side by side: a batch's
statements are round trips on its connection (``bench/pg_store.py`` found
~1.2 ms per delivery, so one connection's batch of 20 took ~24 ms), and
several connections keep the WAL flushes busy; requests that touch one
mailbox still serialise on its row lock, in commit order.
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

    def __init__(self, dsn: str, *, max_batch: int = 64, connections: int = 1) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.dsn = dsn
        self.max_batch = max_batch
        self.connections = connections
        self._conns: list[Any] = []
        self._queue: list[tuple[Callable[[Any], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._wake = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        #: Transactions committed and requests answered (the batching's measure).
        self.commits = 0
        self.requests = 0

    async def start(self) -> None:
        """Connect, check durability, start writing.  Raises NotDurable,
        asyncpg/OSError errors."""
        import asyncpg

        for _ in range(self.connections):
            conn = await asyncpg.connect(self.dsn)
            self._conns.append(conn)
            mode = await conn.fetchval("SHOW synchronous_commit")
            if mode not in DURABLE:
                for c in self._conns:
                    await c.close()
                self._conns = []
                raise NotDurable(f"synchronous_commit is {mode!r}: a commit could be lost "
                                 "after it was acknowledged; set it to on")
        self._stopping = False
        self._tasks = [asyncio.create_task(self._run(c), name="pg-writer")
                       for c in self._conns]

    async def stop(self) -> None:
        """Finish what is queued, then close."""
        async with self._wake:
            self._stopping = True
            self._wake.notify_all()
        await asyncio.gather(*self._tasks)
        self._tasks = []
        for conn in self._conns:
            await conn.close()
        self._conns = []

    async def submit(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``await fn(conn)`` in the next transaction (a savepoint of its
        own) and return its result once that transaction has committed.
        Raises what ``fn`` raised (its savepoint rolled back), or the commit's
        error (nothing of the batch is committed then)."""
        if not self._tasks or self._stopping:
            raise RuntimeError("the writer is not running")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        async with self._wake:
            self._queue.append((fn, fut))
            self._wake.notify()
        return await fut

    async def _run(self, conn: Any) -> None:
        while True:
            async with self._wake:
                await self._wake.wait_for(lambda: bool(self._queue) or self._stopping)
                if not self._queue:
                    return  # stopping, and nothing left
                # A share of what waits, so that the other connections'
                # transactions run beside this one.
                n = min(self.max_batch, -(-len(self._queue) // self.connections))
                batch, self._queue = self._queue[:n], self._queue[n:]
            await self._commit(conn, batch)

    async def _commit(self, conn: Any, batch: list[tuple[Callable[[Any], Awaitable[Any]],
                                                         asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            async with conn.transaction():
                for fn, _ in batch:
                    try:
                        async with conn.transaction():  # a savepoint
                            outcomes.append((True, await fn(conn)))
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


