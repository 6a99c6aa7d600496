"""The outbound queue of the PostgreSQL store, shared by every node, with leases (issue #17 §2).

Rows of ``queue`` (schema v1) hold a queued message's record (the same
encoded ``QueuedMessage`` as the LMDB queue, ``queue/model.py``), its blob
and when it is next due.  A node takes due messages with ``lease``: ``SELECT
... FOR UPDATE SKIP LOCKED`` picks rows no other transaction holds, and the
lease (owner and expiry) is written in the same transaction, so two nodes
never take one message; rows whose lease has expired are due again, so the
messages of a node killed mid-delivery go to another node once its lease
runs out (``LEASE_SECONDS``).  Only the lease holder may ``settle`` a
message (reschedule or remove it); a node that lost its lease (it was too
slow, another node took over) learns so from ``settle`` returning False.

Delivered twice? Only where SMTP allows it: a node killed after the remote
250 but before ``settle`` leaves the message to be sent again by another
node (RFC 5321 §6.1: duplicates over losses).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Seconds a lease lasts; a round renews it (``renew``) if it takes longer.
LEASE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Leased:
    """A message a node holds: ``queue_id``, its encoded ``record``, its
    ``blob_id`` and the lease's ``until`` (POSIX seconds)."""

    queue_id: str
    record: bytes
    blob_id: bytes
    until: float


class PgQueue:
    """The queue over asyncpg connections (see the module doc); ``owner`` names
    this node in the leases; ``clock``: POSIX seconds."""

    def __init__(self, owner: str, *, lease_seconds: float = LEASE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._clock = clock

    async def add(self, conn: Any, queue_id: str, record: bytes, blob_id: bytes,
                  next_attempt: float) -> None:
        """Queue a message (its blob already counted, ``PgBlobs.add``), in the
        caller's transaction.  Raises asyncpg's UniqueViolationError for a
        queue id in use."""
        await conn.execute(
            "INSERT INTO queue (id, record, blob_id, next_attempt) VALUES ($1, $2, $3, $4)",
            queue_id, record, blob_id, next_attempt)

    async def lease(self, conn: Any, limit: int) -> list[Leased]:
        """Take up to ``limit`` due messages, oldest due first: not leased, or
        leased by a node whose lease expired.  One transaction of its own."""
        now = self._clock()
        until = now + self.lease_seconds
        async with conn.transaction():
            rows = await conn.fetch(
                "SELECT id, record, blob_id FROM queue "
                "WHERE next_attempt <= $1 AND (lease_until IS NULL OR lease_until <= $1) "
                "ORDER BY next_attempt LIMIT $2 FOR UPDATE SKIP LOCKED", now, limit)
            if rows:
                await conn.execute(
                    "UPDATE queue SET lease_owner = $1, lease_until = $2 WHERE id = ANY($3)",
                    self.owner, until, [r["id"] for r in rows])
        return [Leased(r["id"], bytes(r["record"]), bytes(r["blob_id"]), until) for r in rows]

    async def renew(self, conn: Any, queue_id: str) -> bool:
        """Extend our lease of ``queue_id``; False when it is no longer ours."""
        done = await conn.execute(
            "UPDATE queue SET lease_until = $3 WHERE id = $1 AND lease_owner = $2",
            queue_id, self.owner, self._clock() + self.lease_seconds)
        return bool(done.endswith(" 1"))

    async def settle(self, conn: Any, queue_id: str, *, record: bytes | None = None,
                     next_attempt: float | None = None) -> bool:
        """After a round: reschedule (``record`` and ``next_attempt`` given) or
        remove the message (neither), releasing the lease; in the caller's
        transaction (with the blob's ``release`` when removed).  False, and
        nothing changed, when the lease is no longer ours."""
        if record is None:
            done = await conn.execute(
                "DELETE FROM queue WHERE id = $1 AND lease_owner = $2", queue_id, self.owner)
        else:
            done = await conn.execute(
                "UPDATE queue SET record = $3, next_attempt = $4, lease_owner = NULL, "
                "lease_until = NULL WHERE id = $1 AND lease_owner = $2",
                queue_id, self.owner, record, next_attempt)
        return bool(done.endswith(" 1"))

    async def size(self, conn: Any) -> int:
        """Messages queued, leased or not."""
        return int(await conn.fetchval("SELECT count(*) FROM queue"))
