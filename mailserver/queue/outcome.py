"""What to do with each recipient after a delivery attempt: a pure decision.

Input: the queued record, the attempt's result per recipient (``RcptResult``:
the next hop's reply or our diagnosis, classified as delivered, temporary or
permanent), the time, and when the backoff would try again (``None`` once the
message has outlived ``max_age``).  Output (``Decision``): the updated
record, what happened to each recipient, and which delivery status
notifications to send.  No I/O, no clock, no randomness: ``rounds.py`` does
the attempt and carries the decision out; ``tests/unit/test_queue_outcome.py``
is the table.

The rules, per recipient tried in this attempt:

====================  =================  ==========  ===========================
result                past max_age?      becomes     report (RFC 3461 NOTIFY)
====================  =================  ==========  ===========================
2xx                   either             delivered   "relayed" when SUCCESS was
                                                     asked and the next hop does
                                                     not offer DSN (§5.2.2)
5xx (or ours, perm.)  either             failed      "failed" with FAILURE
4xx / unreachable     no                 deferred    retry at ``retry_at``
4xx / unreachable     yes                failed      "failed", "gave up after N
                                                     attempts" (RFC 5321
                                                     §4.5.4.1: give up, bounce)
====================  =================  ==========  ===========================

NOTIFY absent means FAILURE,DELAY (RFC 3461 §4.1); NEVER asks for nothing.
A message with no recipient left is done.  One that is not gets a "delayed"
warning (RFC 3464 action) once, for its deferred recipients that asked for
DELAY, when it has waited ``delay_warning`` seconds.  A null reverse-path
(a DSN itself, RFC 5321 §4.5.5) never gets a report.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass

from mailserver.protocol import dsn_params
from mailserver.protocol.dsn_params import DELAY, FAILURE, SUCCESS
from mailserver.queue.model import QueuedMessage, RcptStatus, Recipient


class Outcome(enum.Enum):
    """How one recipient's attempt ended, from the next hop's reply class."""

    DELIVERED = "delivered"
    TEMPORARY = "temporary"  # retry later
    PERMANENT = "permanent"  # bounce


@dataclass(frozen=True, slots=True)
class RcptResult:
    """The result for one recipient: ``reply`` like ``"250 2.0.0 OK"`` or
    ``"550 5.1.1 No such user"``, or our diagnosis in the same shape;
    ``remote_mta``: the host that answered ("" when none did)."""

    address: str
    outcome: Outcome
    reply: str
    remote_mta: str = ""
    #: The host that took it offered DSN: success reports are its job (RFC 3461 §5.2.2).
    next_hop_dsn: bool = False


class Action(enum.Enum):
    """What the decision did with one recipient (the log event names it)."""

    DELIVERED = "delivered"  # final: the next hop took it
    RETRY = "retry"  # deferred until the record's next attempt
    BOUNCE = "bounce"  # final: refused for good
    EXPIRE = "expire"  # final: still failing temporarily after max_age


@dataclass(frozen=True, slots=True)
class RcptDecision:
    """One tried recipient: its address, the action and the reply kept for it."""

    address: str
    action: Action
    reply: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one attempt.

    ``record``: the updated record (recipients, ``attempts`` + 1,
    ``next_attempt``, ``warned``); ``done``: no recipient left, remove it.
    ``rcpts``: the recipients tried, in record order.  ``failed``,
    ``relayed``, ``delayed``: recipients to name in a DSN of that action
    (RFC 3464 §2.3.3), each list possibly empty.
    """

    record: QueuedMessage
    done: bool
    rcpts: tuple[RcptDecision, ...]
    failed: tuple[Recipient, ...] = ()
    relayed: tuple[Recipient, ...] = ()
    delayed: tuple[Recipient, ...] = ()


def wants(rcpt: Recipient, kind: str) -> bool:
    """Whether ``rcpt``'s NOTIFY (RFC 3461 §4.1; absent: FAILURE,DELAY) asks for ``kind``."""
    return kind in dsn_params.DEFAULT_NOTIFY if rcpt.dsn is None else rcpt.dsn.wants(kind)


def decide(
    rec: QueuedMessage,
    results: Mapping[str, RcptResult],
    *,
    now: float,
    retry_at: float | None,
    delay_warning: float | None,
) -> Decision:
    """Apply one attempt's ``results`` (by address) to ``rec`` (see the module docstring).

    ``now``: Unix seconds; ``retry_at``: the backoff's next attempt time,
    None when the message is past its maximum age; ``delay_warning``:
    seconds after creation for the "delayed" report, None for never.
    Recipients without a result keep their state.  Raises ValueError when a
    recipient stays active but there is no ``retry_at`` (a result is missing).
    """
    attempts = rec.attempts + 1
    new: list[Recipient] = []
    tried: list[RcptDecision] = []
    for r in rec.recipients:
        res = results.get(r.address)
        if res is None:
            new.append(r)
            continue
        if res.outcome is Outcome.DELIVERED:
            action, status, reply = Action.DELIVERED, RcptStatus.DELIVERED, res.reply
        elif res.outcome is Outcome.PERMANENT:
            action, status, reply = Action.BOUNCE, RcptStatus.FAILED, res.reply
        elif retry_at is None:  # RFC 5321 §4.5.4.1: give up after the maximum age
            action, status = Action.EXPIRE, RcptStatus.FAILED
            reply = f"{res.reply} (gave up after {attempts} attempts)"
        else:
            action, status, reply = Action.RETRY, RcptStatus.DEFERRED, res.reply
        new.append(dataclasses.replace(r, status=status, attempts=r.attempts + 1,
                                       last_error=reply, remote_mta=res.remote_mta))
        tried.append(RcptDecision(r.address, action, reply))
    report = bool(rec.reverse_path)  # never a report about a report
    failed = tuple(r for r in new if report and r.status is RcptStatus.FAILED
                   and r.address in results and wants(r, FAILURE))
    relayed = tuple(r for r in new if report and r.status is RcptStatus.DELIVERED
                    and r.address in results and wants(r, SUCCESS)
                    and not results[r.address].next_hop_dsn)
    updated = dataclasses.replace(rec, recipients=tuple(new), attempts=attempts,
                                  next_attempt=retry_at if retry_at is not None else now)
    if updated.done:
        return Decision(updated, True, tuple(tried), failed, relayed)
    if retry_at is None:
        raise ValueError(f"recipients of {rec.id} left active past the maximum age")
    delayed: tuple[Recipient, ...] = ()
    if (delay_warning is not None and report and not rec.warned
            and now - rec.created >= delay_warning):
        delayed = tuple(r for r in new if r.status is RcptStatus.DEFERRED and wants(r, DELAY))
        updated = dataclasses.replace(updated, warned=True)
    return Decision(updated, False, tuple(tried), failed, relayed, delayed)
