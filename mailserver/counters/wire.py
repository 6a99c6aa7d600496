"""The counter service's wire format: one ASCII line per message, pipelined.

Requests (worker -> supervisor)::

    A <max_total> <max_per_ip> <want> <ip> <scope>\\n
                                 acquire a slot and up to want - 1 spares;
                                 answered with "<taken> <credit>": the number
                                 taken (0: refused) and how many connections
                                 the worker may admit on spares without asking
                                 (-1: no rate limit applies; counted already)
    R <n> <ip> <scope>\\n        release n slots; no answer
    F <ip>\\n                                   count a failed login; answered
                                               with the delay in seconds
    E <json array>\\n   mail-flow events for the hub; no answer
    Q <json>\\n         a hub query (stats, events); one JSON line back
    W <json>\\n         follow the hub: JSON event lines until closed

Answers come back in the order of the requests that have one (A and F), so
the client matches them with a FIFO of futures.  The scope (a listener name)
is last, so it may hold spaces; newlines are replaced.
"""

from __future__ import annotations

import json

#: File name of the service's unix stream socket, in ``data_dir/run``.
SERVICE_NAME = "counters.stream"
#: Most slots one acquire may take (the one used and the spares).
MAX_WANT = 8
#: Longest line the service reads (an IPv6 address and a listener name fit).
MAX_LINE = 1024


def _scope(scope: str) -> str:
    return scope.replace("\n", " ")


def acquire(scope: str, ip: str, max_total: int, max_per_ip: int, want: int = 1) -> bytes:
    """An ``A`` request line (ASCII bytes): take a slot plus up to ``want - 1`` spares."""
    return f"A {max_total} {max_per_ip} {want} {ip} {_scope(scope)}\n".encode()


def release(scope: str, ip: str, n: int = 1) -> bytes:
    """An ``R`` request line (ASCII bytes): give back ``n`` slots; not answered."""
    return f"R {n} {ip} {_scope(scope)}\n".encode()


def auth_failure(ip: str) -> bytes:
    """An ``F`` request line (ASCII bytes): count a failed login; answered with the delay."""
    return f"F {ip}\n".encode()


def rate_admit(ip: str) -> bytes:
    """A ``C`` request line (ASCII bytes): count a connection served on a spare slot."""
    return f"C {ip}\n".encode()


def rate(checks: tuple[tuple[str, int, str], ...], n: int = 1) -> bytes:
    """A ``T`` request line (ASCII bytes): ``Counters.rate``; answered ``1`` or ``0``."""
    items = " ".join(f"{w}:{limit}:{key.replace(' ', '_')}" for w, limit, key in checks)
    return f"T {n} {items}\n".encode()


#: Longest ``E``/``Q``/``W`` line (mail-flow events, ``analytics/``).
MAX_EVENT_LINE = 1 << 20


def flow_events(events: list[dict[str, object]]) -> bytes:
    """An ``E`` request line: mail-flow events (JSON array) for the hub; no answer."""
    return b"E " + json.dumps(events, separators=(",", ":")).encode() + b"\n"


def flow_query(request: dict[str, object]) -> bytes:
    """A ``Q`` request line: ``{"op": "stats"}`` or ``{"op": "events", ...}``;
    answered with one JSON line."""
    return b"Q " + json.dumps(request, separators=(",", ":")).encode() + b"\n"


def flow_watch(request: dict[str, object]) -> bytes:
    """A ``W`` request line (``{"after": id, "filters": {...}}``): from then on the
    connection carries one JSON event per line, for as long as it is open."""
    return b"W " + json.dumps(request, separators=(",", ":")).encode() + b"\n"
