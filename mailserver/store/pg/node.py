"""What one daemon (a node) holds of the PostgreSQL store (issue #17): its
group-commit writer, a read pool, the change feed, and the store's parts
over them (directory, mailboxes, messages, queue), opened and closed together.

``open`` refuses a database whose schema this release cannot run on
(``migrations.check``: run ``mailserver db migrate`` first, or upgrade the
node) and one whose commits would not be durable (``writer.NotDurable``).
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from mailserver.errors import StoreUnavailable
from mailserver.store.pg import migrations
from mailserver.store.pg.blobs import ObjectStore, PgBlobs
from mailserver.store.pg.changes import Change, ChangeListener, MailboxWaiters
from mailserver.store.pg.directory import PgDirectory
from mailserver.store.pg.mailboxes import PgMailboxes
from mailserver.store.pg.messages import PgMessages
from mailserver.store.pg.queue import PgQueueStore
from mailserver.store.pg.writer import PgWriter

#: Read connections per node: reads are short (one statement or a small
#: transaction); the writer has connections of its own.
POOL_SIZE = 8


class PgNode:
    """The PostgreSQL store of one node: ``dsn``, ``writer_connections``
    (``[store]``), ``objects`` where blobs go (None: in the database)."""

    def __init__(self, dsn: str, *, writer_connections: int = 4,
                 objects: ObjectStore | None = None) -> None:
        self.dsn = dsn
        self.writer = PgWriter(dsn, connections=writer_connections)
        self.objects = objects
        self.blobs = PgBlobs(objects)
        self.pool: Any = None
        self.directory: PgDirectory | None = None
        self.mailboxes: PgMailboxes | None = None
        self.messages: PgMessages | None = None
        self.queue: PgQueueStore | None = None
        self.waiters = MailboxWaiters()
        self._listener = ChangeListener(dsn, self._changed)

    async def open(self) -> None:
        """Check the schema, connect, start writing and listening.  Raises
        StoreUnavailable (schema, durability, connection) with what to do."""
        import asyncpg

        try:
            conn = await asyncpg.connect(self.dsn, timeout=30)
            try:
                migrations.check(await migrations.status(conn))
            finally:
                await conn.close()
            await self.writer.start()
            self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=POOL_SIZE)
            await self._listener.start()
        except migrations.SchemaError as exc:
            await self.close()
            raise StoreUnavailable(str(exc)) from exc
        except Exception as exc:  # asyncpg's errors, OSError, NotDurable
            await self.close()
            raise StoreUnavailable(f"the PostgreSQL store: {exc}") from exc
        self.directory = PgDirectory(self.writer, self.pool)
        self.mailboxes = PgMailboxes(self.writer, self.pool, self.blobs)
        self.messages = PgMessages(self.writer, self.pool, self.blobs, self.waiters)
        self.queue = PgQueueStore(self.writer, self.pool, self.blobs)

    async def shared_secret(self, name: str, size: int = 32) -> bytes:
        """The secret ``name`` every node shares (the SRS key), made by whichever
        node asks first: ``size`` random octets, inserted once (a node asking
        at the same moment reads the winner's).  Raises asyncpg's errors."""
        made = secrets.token_bytes(size)

        async def write(conn: Any) -> bytes:
            await conn.execute("INSERT INTO node_secrets VALUES ($1, $2) "
                               "ON CONFLICT (name) DO NOTHING", name, made)
            return bytes(await conn.fetchval("SELECT value FROM node_secrets "
                                             "WHERE name = $1", name))
        value: bytes = await self.writer.submit(write)
        return value

    def _changed(self, change: Change) -> None:
        self.waiters.notice(change)
        if self.queue is not None:
            self.queue.notice(change)

    async def close(self) -> None:
        """Stop listening and writing (what is queued is committed first), close."""
        if self.queue is not None:
            self.queue.close()
        with contextlib.suppress(Exception):
            await self._listener.stop()
        if self.pool is not None:
            pool, self.pool = self.pool, None
            with contextlib.suppress(Exception):
                await pool.close()
        with contextlib.suppress(Exception):
            await self.writer.stop()
