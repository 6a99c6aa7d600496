"""Queue records: a message's envelope and the state of each recipient.

Encoded as compact JSON (a record is small and read rarely; readability in
``mailserver queue show`` and forward-compatible optional fields matter more
than bytes).  Times are Unix seconds (float).
"""

from __future__ import annotations

import enum
import json
import os
import time
from dataclasses import dataclass, replace


class RcptStatus(enum.Enum):
    """Where a recipient stands (RFC 3464 §2.3.3 actions, roughly)."""

    PENDING = "pending"  # not tried yet
    DEFERRED = "deferred"  # tried, failed temporarily (4xx, no connection); will retry
    DELIVERED = "delivered"  # the receiving server said 250 (RFC 3464 "relayed")
    FAILED = "failed"  # permanent failure (5xx, null MX, too old): bounced

    @property
    def final(self) -> bool:
        return self in (RcptStatus.DELIVERED, RcptStatus.FAILED)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One forward-path and its delivery state.

    ``last_error`` is the remote reply or our diagnosis, e.g.
    ``"550 5.1.1 no such user"`` (``""`` while none); ``attempts`` counts tries.
    ``remote_mta`` is the host that gave the final answer (for the DSN).
    """

    address: str
    status: RcptStatus = RcptStatus.PENDING
    attempts: int = 0
    last_error: str = ""
    remote_mta: str = ""

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message waiting for delivery to some of its recipients.

    ``reverse_path`` is ``""`` for the null reverse-path (a DSN: RFC 5321 §4.5.5).
    ``blob_id`` is the SHA-256 of the content in the store's blob table.
    ``next_attempt`` is when the scheduler takes it again (also the schedule
    index key); ``attempts`` counts delivery rounds (drives the backoff);
    ``warned`` is set once a delay DSN went out.
    """

    id: str
    reverse_path: str
    created: float
    blob_id: bytes
    size: int
    recipients: tuple[Recipient, ...]
    next_attempt: float
    attempts: int = 0
    warned: bool = False

    @property
    def active(self) -> tuple[Recipient, ...]:
        """Recipients still to deliver (pending or deferred)."""
        return tuple(r for r in self.recipients if not r.status.final)

    @property
    def done(self) -> bool:
        return not self.active

    def with_recipients(self, recipients: tuple[Recipient, ...], **changes: object) -> QueuedMessage:
        return replace(self, recipients=recipients, **changes)  # type: ignore[arg-type]


def new_queue_id(now: float | None = None) -> str:
    """A unique id that sorts by creation time: 12 hex digits of milliseconds + 8 random."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{os.urandom(4).hex()}"


def encode(msg: QueuedMessage) -> bytes:
    """The record's JSON bytes (see ``decode``)."""
    return json.dumps(
        {
            "v": 1,
            "id": msg.id,
            "from": msg.reverse_path,
            "created": msg.created,
            "blob": msg.blob_id.hex(),
            "size": msg.size,
            "next": msg.next_attempt,
            "attempts": msg.attempts,
            "warned": msg.warned,
            "rcpts": [
                [r.address, r.status.value, r.attempts, r.last_error, r.remote_mta]
                for r in msg.recipients
            ],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def decode(data: bytes) -> QueuedMessage:
    """Inverse of ``encode``.  Raises ValueError/KeyError on a damaged record."""
    d = json.loads(data)
    return QueuedMessage(
        id=d["id"],
        reverse_path=d["from"],
        created=float(d["created"]),
        blob_id=bytes.fromhex(d["blob"]),
        size=int(d["size"]),
        next_attempt=float(d["next"]),
        attempts=int(d.get("attempts", 0)),
        warned=bool(d.get("warned", False)),
        recipients=tuple(
            Recipient(a, RcptStatus(s), int(n), e, m) for a, s, n, e, m in d["rcpts"]
        ),
    )
