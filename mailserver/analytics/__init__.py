"""Mail-flow analytics: one event stream, rolling windows, percentiles (issue 14 §4).

Every mail-flow point (the SMTP end of DATA, a refusal, a local delivery, a
message queued, an outbound attempt and its outcome, a failed login, an IMAP
login) calls ``emit(FlowEvent(...))``.  ``emit`` hands the event to this
process's sink, set once by ``app.App.start`` (``set_sink``):

* ``workers = 1``: the ``hub.FlowHub`` of this process (memory only; its
  files are written once a second by its flusher, never per event);
* ``workers > 1``: a ``remote.BatchSink``: events are buffered and written to
  the supervisor's counter service as one ``E`` line per loop iteration (no
  syscall per event, like ``log.LineBatcher``); the supervisor keeps the one
  ``FlowHub`` every worker's API reads, so every worker gives the same answer
  and the sketches merge exactly (they are built in one place from the raw
  latencies, then merged minute by minute, which DDSketch does exactly).

Why module state: like ``metrics``, the emitting seams span every layer and
there is one sink per process by nature.  Without a sink (tests of a parser,
``analytics.enabled = false``) ``emit`` is one attribute test.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any


class Kind(enum.StrEnum):
    """What happened (the ``kind`` of a ``FlowEvent``)."""

    RECEIVED = "received"
    REFUSED = "refused"
    DELIVERED = "delivered"
    QUEUED = "queued"
    ATTEMPT = "attempt"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    AUTH_FAILURE = "auth_failure"
    IMAP_LOGIN = "imap_login"


@dataclasses.dataclass(frozen=True, slots=True)
class FlowEvent:
    """One mail-flow event.

    ``received`` is a message accepted (250 after DATA); a message not
    accepted is one ``refused`` (at MAIL, RCPT or DATA, or when delivery
    failed) with the reply it got.
    ``time``: POSIX seconds; ``direction``: ``"in"`` (mail for us, port 25),
    ``"out"`` (submission, outbound queue) or ``""``; ``domain``: the peer's
    domain of the flow (recipient domain for mail in and out); ``account``: the
    local account concerned ("" when none); ``result``: ``"ok"``, ``"temp"``,
    ``"perm"`` (from the SMTP reply class, RFC 5321 §4.2.1) or ``""``;
    ``code``: the reply such as ``"550 5.1.1"``; ``reason``: a short log
    reason; ``size``: octets; ``latency``: seconds (end of DATA -> 250 for
    received, end of DATA -> committed for delivered, queued -> accepted
    remotely for attempt), None when it does not apply; ``sender``: the
    reverse-path's domain of a received message ("" for the null
    reverse-path and the other kinds).
    """

    kind: Kind
    time: float
    direction: str = ""
    domain: str = ""
    account: str = ""
    result: str = ""
    code: str = ""
    reason: str = ""
    size: int = 0
    latency: float | None = None
    source: str = ""  # the client IP, or the remote MTA of an attempt
    sender: str = ""  # the reverse-path's domain (received)

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object (the API's and the files' shape)."""
        return {"kind": self.kind.value, "time": self.time, "direction": self.direction,
                "domain": self.domain, "account": self.account, "result": self.result,
                "code": self.code, "reason": self.reason, "size": self.size,
                "latency": self.latency, "source": self.source, "sender": self.sender}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FlowEvent:
        """The inverse of ``to_json``.  Raises ``ValueError``/``KeyError``/``TypeError``."""
        lat = obj.get("latency")
        return cls(Kind(obj["kind"]), float(obj["time"]), str(obj.get("direction", "")),
                   str(obj.get("domain", "")), str(obj.get("account", "")),
                   str(obj.get("result", "")), str(obj.get("code", "")),
                   str(obj.get("reason", "")), int(obj.get("size", 0)),
                   None if lat is None else float(lat), str(obj.get("source", "")),
                   str(obj.get("sender", "")))


def result_of(reply: str) -> str:
    """``"ok"``/``"temp"``/``"perm"`` from an SMTP reply's first digit (RFC 5321 §4.2.1)."""
    first = reply[:1]
    return "ok" if first == "2" else "temp" if first == "4" else "perm" if first == "5" else ""


def domain_of(address: str) -> str:
    """The lower-cased domain of ``address`` ("" without one)."""
    return address.rpartition("@")[2].strip("<>").lower() if "@" in address else ""


_sink: Callable[[FlowEvent], None] | None = None


def set_sink(sink: Callable[[FlowEvent], None] | None) -> None:
    """Where ``emit`` sends this process's events (None: nowhere)."""
    global _sink
    _sink = sink


def clear_sink(sink: Callable[[FlowEvent], None]) -> None:
    """Unset ``sink`` if it is still the one set (several in-process servers, as in
    tests, each clear only their own)."""
    global _sink
    if _sink == sink:
        _sink = None


def emit(event: FlowEvent) -> None:
    """Hand one event to this process's sink (no I/O here)."""
    if _sink is not None:
        _sink(event)


def enabled() -> bool:
    """Whether a sink is set (callers may skip building events when not)."""
    return _sink is not None
