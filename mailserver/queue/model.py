"""Queue records: a message's envelope and the state of each recipient.

Encoded as compact JSON (a record is small and read rarely; readability in
``mailserver queue show`` and forward-compatible optional fields matter more
than bytes).  Times are Unix seconds (float).

DSN parameters (RFC 3461) are optional keys, written only when given, so
records from before them read as "none given": ``ret``/``envid`` for the
message, and ``dsn`` mapping a recipient's address to its ``notify`` list
(``[]`` is NEVER) and ``orcpt`` ``[addr-type, address]``.  They are kept
apart from the positional ``rcpts`` rows so that an older reader still
decodes a newer record.

REQUIRETLS (RFC 8689) is the optional key ``requiretls`` (true when MAIL
carried it, §4.1) and ``tls_optional`` (the message's ``TLS-Required: No``
header field, §4.2.1; never set together with ``requiretls``, which wins);
records without them decode as False.

``bounce`` (optional, ``""`` when absent) is the reply an administrator
asked the message to be returned with (``mailserver queue bounce``): the
next round sends no mail and fails every recipient still active with it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from typing import Any

from mailserver.protocol.dsn_params import MailDsn, Orcpt, RcptDsn


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
    dsn: RcptDsn | None = None  # RCPT's NOTIFY/ORCPT (RFC 3461 §4.1, §4.2)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message waiting for delivery to some of its recipients.

    ``id`` is the message's queue id (``ids``; records of earlier versions
    keep theirs, any ASCII string).

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
    dsn: MailDsn | None = None  # MAIL's RET/ENVID (RFC 3461 §4.3, §4.4)
    requiretls: bool = False  # MAIL's REQUIRETLS (RFC 8689 §4.1): verified TLS only
    tls_optional: bool = False  # "TLS-Required: No" (RFC 8689 §4.2.1): TLS policy waived
    bounce: str = ""  # an administrator's "return it" reply, e.g. "550 5.0.0 ..."

    @property
    def active(self) -> tuple[Recipient, ...]:
        """Recipients still to deliver (pending or deferred)."""
        return tuple(r for r in self.recipients if not r.status.final)

    @property
    def done(self) -> bool:
        return not self.active

    def with_recipients(self, recipients: tuple[Recipient, ...], **changes: object) -> QueuedMessage:
        return replace(self, recipients=recipients, **changes)  # type: ignore[arg-type]


def encode(msg: QueuedMessage) -> bytes:
    """The record's JSON bytes (see ``decode``)."""
    record: dict[str, Any] = {
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
    }
    if msg.dsn is not None:
        if msg.dsn.ret is not None:
            record["ret"] = msg.dsn.ret
        if msg.dsn.envid is not None:
            record["envid"] = msg.dsn.envid
    if msg.requiretls:
        record["requiretls"] = True
    if msg.tls_optional:
        record["tls_optional"] = True
    if msg.bounce:
        record["bounce"] = msg.bounce
    rcpt_dsn = {r.address: _encode_rcpt_dsn(r.dsn) for r in msg.recipients if r.dsn is not None}
    if rcpt_dsn:
        record["dsn"] = rcpt_dsn
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def _encode_rcpt_dsn(dsn: RcptDsn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if dsn.notify is not None:
        out["notify"] = sorted(dsn.notify)
    if dsn.orcpt is not None:
        out["orcpt"] = [dsn.orcpt.addr_type, dsn.orcpt.address]
    return out


def _decode_rcpt_dsn(d: dict[str, Any] | None) -> RcptDsn | None:
    if d is None:
        return None
    notify = d.get("notify")
    orcpt = d.get("orcpt")
    return RcptDsn(
        notify=None if notify is None else frozenset(str(k) for k in notify),
        orcpt=None if orcpt is None else Orcpt(str(orcpt[0]), str(orcpt[1])),
    )


def decode(data: bytes) -> QueuedMessage:
    """Inverse of ``encode``.  Raises ValueError/KeyError on a damaged record."""
    d = json.loads(data)
    rcpt_dsn = d.get("dsn", {})
    ret, envid = d.get("ret"), d.get("envid")
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
            Recipient(a, RcptStatus(s), int(n), e, m, _decode_rcpt_dsn(rcpt_dsn.get(a)))
            for a, s, n, e, m in d["rcpts"]
        ),
        dsn=None if ret is None and envid is None else MailDsn(ret, envid),
        requiretls=bool(d.get("requiretls", False)),
        tls_optional=bool(d.get("tls_optional", False)),
        bounce=str(d.get("bounce", "")),
    )
