"""What the outbound queue needs of the store (issue #17 §1): ``QueueStore``.

The queue does not interpret the store and the store does not interpret the
queue's records (``model.py`` encodes them): the store keeps, beside each
record, the blob it sends and when it is next due.  Two implementations:
``store.api.LmdbQueue`` (one scheduler per store, in the supervisor) and
``store.pg.queue.PgQueueStore`` (every node schedules; leases decide who
runs a round).

The lease.  Before a round starts, the scheduler *leases* the message: its
record is rewritten with the next attempt time the round's failure would
give, and the message is due again then (``queue_lease``), so a process that
dies mid-round leaves the message to be retried, by it after a restart or by
another node; at least once, never lost.  With several schedulers on one
store (PostgreSQL), the lease is taken only while the message is still due,
in one statement, so two nodes never start a round for one message at once;
and a round's result is written only by the lease's holder
(``queue_settle``), so a node whose round outlived its lease (another node
took the message over) does not overwrite the newer state.  Duplicates only
where SMTP allows them (RFC 5321 §6.1: a node killed after the remote 250,
before the settle, leaves the message to be sent again).

Held messages (``mailserver queue hold``) are never leased; a hold made
while a round runs survives the round's settle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class QueueStore(Protocol):
    """The queue's records, schedule and blobs.  Times are POSIX seconds;
    records and blobs are bytes.  Every write is committed and synced when
    it returns."""

    async def queue_add(self, queue_id: str, record: bytes, blob: bytes,
                        next_attempt: float) -> bytes:
        """Queue a message: its record, due at ``next_attempt``, and a reference to
        the content-addressed ``blob`` (stored once).  Returns the blob id
        (SHA-256).  Raises RuntimeError when ``queue_id`` is taken,
        ``MailserverError`` (store full)."""
        ...

    async def queue_due(self, now: float, limit: int) -> list[str]:
        """Ids of messages due at ``now`` or earlier and not held, earliest first,
        at most ``limit``."""
        ...

    async def queue_next_due(self) -> float | None:
        """The earliest next attempt of any message (held ones are far in the
        future), None for an empty queue."""
        ...

    async def queue_get(self, queue_id: str) -> bytes | None:
        """The record of ``queue_id``, None when there is none."""
        ...

    async def queue_list(self) -> list[bytes]:
        """Every queued record, in queue id order (the metrics' gauges)."""
        ...

    async def queue_lease(self, queue_id: str, record: bytes, until: float, *,
                          due_by: float) -> bool:
        """Take the message for a round (module doc): only while it is due at
        ``due_by`` and not held, rewrite its record (``record``: its next
        attempt is ``until``) and make it due at ``until``.  True: the round is
        ours; False: held, gone, or taken by another scheduler meanwhile."""
        ...

    async def queue_settle(self, queue_id: str, record: bytes | None,
                           next_attempt: float = 0.0) -> bool:
        """End a round we hold the lease of: remove the message (``record``
        None; its blob reference goes) or rewrite it, due at ``next_attempt``
        (a hold made meanwhile stays).  False, nothing changed, when the
        message is gone or another scheduler holds it now."""
        ...

    async def queue_reschedule(self, queue_ids: Sequence[str], next_attempt: float, *,
                               only_later: bool = True) -> list[str]:
        """Make messages due at ``next_attempt`` (``only_later``: leave those due
        earlier alone).  Returns the ids that exist."""
        ...

    async def wait_for_queue_change(self) -> None:
        """Return when a message was queued or rescheduled by anyone (a worker,
        the CLI, another node).  Raises ``MailserverError`` when the store
        closes."""
        ...

    async def get_blob(self, blob_id: bytes) -> bytes:
        """A queued message's octets by blob id.  Raises NotFound."""
        ...
