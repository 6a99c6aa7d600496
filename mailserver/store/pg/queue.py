"""The outbound queue of the PostgreSQL store, shared by every node (issue #17 §2):
``queue.storage.QueueStore`` over schema v1.

Rows of ``queue`` hold a queued message's record (the same encoded
``QueuedMessage`` as the LMDB queue, ``queue/model.py``), its blob and when
it is next due.  Every node runs a scheduler; ``queue_lease`` decides which
one runs a round: one ``UPDATE ... WHERE next_attempt <= due_by`` takes the
message only while it is still due (PostgreSQL re-checks the condition on
the row a concurrent lease just changed, so of two nodes one gets the row
and the other nothing), writes the lease (``lease_owner``, this node) and
makes the message due again at the lease's end, when a round that died with
its node has left it.  Only the lease's holder settles the round
(``queue_settle``): a node whose round outlived its lease, while another
node took the message over, changes nothing and learns so (False).

Held messages (``mailserver queue hold``) are due at ``HELD`` (year 9999), as
on LMDB, so no node leases them; a hold made while a round runs stays.

Delivered twice? Only where SMTP allows it: a node killed after the remote
250 but before its settle leaves the message to be sent again by another
node (RFC 5321 §6.1: duplicates over losses).

A change (queued, rescheduled) is announced on the change feed
(``changes.py``); a node's ``ChangeListener`` hands queue changes to
``notice``, which wakes ``wait_for_queue_change``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Sequence
from typing import Any

from mailserver.errors import MailserverError, NotFound
from mailserver.store.pg.blobs import BlobNotFound, PgBlobs
from mailserver.store.pg.changes import Change, announce
from mailserver.store.pg.writer import PgWriter

#: The due time of a held message, POSIX seconds: 9999-12-31 23:59:59 UTC, as
#: the LMDB queue's ``HELD_MS``.
HELD = 253_402_300_799.0

_QUEUE_CHANGE = Change("queue", 0, 0)


def node_name() -> str:
    """A name for this process in the leases: host, PID and a random tag (a
    restarted process with a recycled PID is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class PgQueueStore:
    """``QueueStore`` on PostgreSQL (module doc): ``writer`` commits, ``pool``
    reads, ``blobs`` holds the octets, ``owner`` names this node in leases."""

    def __init__(self, writer: PgWriter, pool: Any, blobs: PgBlobs | None = None, *,
                 owner: str | None = None) -> None:
        self._writer = writer
        self._pool = pool
        self._blobs = blobs or PgBlobs()
        self.owner = owner or node_name()
        self._changed = asyncio.Event()
        self._closed = False

    def notice(self, change: Change) -> None:
        """The change feed's callback (``ChangeListener``): wake the scheduler
        on a queue change."""
        if change.kind == "queue":
            self._changed.set()

    def close(self) -> None:
        """End ``wait_for_queue_change`` (it raises): the node is stopping."""
        self._closed = True
        self._changed.set()

    async def queue_add(self, queue_id: str, record: bytes, blob: bytes,
                        next_attempt: float) -> bytes:
        """See ``QueueStore``."""
        record, blob = bytes(record), bytes(blob)

        async def write(conn: Any) -> bytes:
            blob_id: bytes = await self._blobs.add(conn, blob)
            done = await conn.execute("INSERT INTO queue (id, record, blob_id, next_attempt) "
                                      "VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                                      queue_id, record, blob_id, next_attempt)
            if done.endswith(" 0"):  # the savepoint takes the blob reference back too
                raise RuntimeError(f"queue id {queue_id} is taken")
            await announce(conn, _QUEUE_CHANGE)
            return blob_id
        result: bytes = await self._writer.submit(write)
        return result

    async def queue_due(self, now: float, limit: int) -> list[str]:
        """See ``QueueStore``."""
        rows = await self._pool.fetch("SELECT id FROM queue WHERE next_attempt <= $1 "
                                      "ORDER BY next_attempt, id LIMIT $2", now, limit)
        return [r["id"] for r in rows]

    async def queue_next_due(self) -> float | None:
        """See ``QueueStore``."""
        due = await self._pool.fetchval("SELECT min(next_attempt) FROM queue")
        return None if due is None else float(due)

    async def queue_get(self, queue_id: str) -> bytes | None:
        """See ``QueueStore``."""
        record = await self._pool.fetchval("SELECT record FROM queue WHERE id = $1", queue_id)
        return None if record is None else bytes(record)

    async def queue_list(self) -> list[bytes]:
        """See ``QueueStore``."""
        rows = await self._pool.fetch("SELECT record FROM queue ORDER BY id")
        return [bytes(r["record"]) for r in rows]

    async def queue_lease(self, queue_id: str, record: bytes, until: float, *,
                          due_by: float) -> bool:
        """See ``QueueStore``: one statement, so two nodes never both win."""
        record = bytes(record)

        async def write(conn: Any) -> bool:
            done = await conn.execute(
                "UPDATE queue SET record = $2, next_attempt = $3, lease_owner = $4, "
                "lease_until = $3 WHERE id = $1 AND next_attempt <= $5 AND next_attempt < $6",
                queue_id, record, until, self.owner, due_by, HELD)
            return bool(done.endswith(" 1"))
        return bool(await self._writer.submit(write))

    async def queue_settle(self, queue_id: str, record: bytes | None,
                           next_attempt: float = 0.0) -> bool:
        """See ``QueueStore``: only while this node holds the lease."""
        doomed: list[bytes] = []

        async def write(conn: Any) -> bool:
            if record is None:
                blob_id = await conn.fetchval(
                    "DELETE FROM queue WHERE id = $1 AND lease_owner = $2 RETURNING blob_id",
                    queue_id, self.owner)
                if blob_id is None:
                    return False
                doomed.extend(await self._blobs.release(conn, bytes(blob_id)))
                return True
            done = await conn.execute(
                "UPDATE queue SET record = $3, lease_owner = NULL, lease_until = NULL, "
                "next_attempt = CASE WHEN next_attempt >= $5 THEN next_attempt ELSE $4 END "
                "WHERE id = $1 AND lease_owner = $2",
                queue_id, self.owner, bytes(record), next_attempt, HELD)
            if done.endswith(" 0"):
                return False
            await announce(conn, _QUEUE_CHANGE)
            return True
        settled = bool(await self._writer.submit(write))
        await self._blobs.forget(doomed)  # after the commit
        return settled

    async def queue_reschedule(self, queue_ids: Sequence[str], next_attempt: float, *,
                               only_later: bool = True) -> list[str]:
        """See ``QueueStore``."""
        ids = list(queue_ids)

        async def write(conn: Any) -> list[str]:
            found = [r["id"] for r in await conn.fetch(
                "SELECT id FROM queue WHERE id = ANY($1) ORDER BY id", ids)]
            await conn.execute(
                "UPDATE queue SET next_attempt = $2 WHERE id = ANY($1) "
                "AND (NOT $3 OR next_attempt > $2)", found, next_attempt, only_later)
            await announce(conn, _QUEUE_CHANGE)
            return found
        result: list[str] = await self._writer.submit(write)
        return result

    async def wait_for_queue_change(self) -> None:
        """See ``QueueStore``: set by ``notice``.  Raises MailserverError once closed."""
        await self._changed.wait()
        self._changed.clear()
        if self._closed:
            raise MailserverError("the queue store is closed")

    async def get_blob(self, blob_id: bytes) -> bytes:
        """See ``QueueStore``."""
        async with self._pool.acquire() as conn:
            try:
                return await self._blobs.get(conn, blob_id)
            except BlobNotFound as exc:
                raise NotFound(f"no blob {blob_id.hex()}") from exc
