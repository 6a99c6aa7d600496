"""Counters that protect the server, in one place for every worker.

Two kinds (``Counters``):

* connection slots, per listener and per client IP (``limits.max_connections``,
  ``limits.max_connections_per_ip``; RFC 5321 §4.5.3.2 and RFC 3501 leave the
  limits to us): ``acquire`` at accept, ``release`` at close;
* failed logins per client IP (``auth/throttle.py``): ``auth_failure`` counts
  one and answers the delay to impose before the failure reply.

With ``workers = 1`` the table lives in the process (``LocalCounters``: no
I/O, no await that suspends).  With more workers it lives in the supervisor
(``service.py``) and each worker reaches it over one unix socket
(``client.py``).  Far from a limit, the service hands a worker a few spare
slots with the one it asked for (``ConnectionSlots.acquire_many``); the
worker spends them on the next connections of that client and keeps those
given back at close, so a client that reconnects (one connection per
message) costs no round trip; unused spares go back after a second.  Near a
limit there are no spares: every slot is one round trip, and the limit is
exact.  Spares are held slots in the service's table, so a limit is never
exceeded; at worst a client near its limit is refused while another worker
still holds a spare of its for up to a second.  One round trip per failed
login.  Slots a worker holds are released when its connection to the
service ends, so a worker that dies gives its slots back.  Counting per
worker would multiply every limit by the number of workers.
"""

from __future__ import annotations

from typing import Protocol

from mailserver.auth.throttle import AuthThrottle
from mailserver.config import Limits


class Counters(Protocol):
    """What listeners and AUTH/LOGIN use (in-process or the supervisor's)."""

    async def acquire(self, scope: str, ip: str, max_total: int, max_per_ip: int) -> bool:
        """Take one connection slot of ``scope`` (a listener name) for ``ip``:
        False (and nothing taken) when ``scope`` already holds ``max_total``
        or ``ip`` holds ``max_per_ip`` of it."""
        ...

    def release(self, scope: str, ip: str) -> None:
        """Give back a slot ``acquire`` took (once per successful acquire)."""
        ...

    async def auth_failure(self, ip: str) -> float:
        """Count one failed login of ``ip``; the delay (seconds) to impose now."""
        ...

    async def close(self) -> None:
        """Let go of the counters (the in-process table: nothing to do)."""
        ...


class ConnectionSlots:
    """The slot table: held slots per scope and per (scope, ip).  Sans-IO."""

    def __init__(self) -> None:
        # Plain dicts, not Counters: Counter.__missing__ is a Python call per new key.
        self._total: dict[str, int] = {}
        self._per_ip: dict[tuple[str, str], int] = {}

    def acquire(self, scope: str, ip: str, max_total: int, max_per_ip: int) -> bool:
        """Take one slot of ``scope`` for ``ip``; False (nothing taken) when either count
        is already at its limit.
        """
        total = self._total.get(scope, 0)
        key = (scope, ip)
        count = self._per_ip.get(key, 0)
        if total >= max_total or count >= max_per_ip:
            return False
        self._total[scope] = total + 1
        self._per_ip[key] = count + 1
        return True

    def acquire_many(self, scope: str, ip: str, max_total: int, max_per_ip: int,
                     want: int) -> int:
        """Take one slot as ``acquire`` does, plus up to ``want - 1`` spares while
        the counts stay at or below half of each limit (spares never crowd a
        limit).  Returns how many were taken: 0 (refused) to ``want``."""
        if not self.acquire(scope, ip, max_total, max_per_ip):
            return 0
        total = self._total[scope]
        key = (scope, ip)
        count = self._per_ip[key]
        spares = max(0, min(want - 1, max_total // 2 - total, max_per_ip // 2 - count))
        if spares:
            self._total[scope] = total + spares
            self._per_ip[key] = count + spares
        return 1 + spares

    def release(self, scope: str, ip: str, n: int = 1) -> None:
        """Give back ``n`` slots of ``scope`` held by ``ip`` (counts never go below zero)."""
        key = (scope, ip)
        count = self._per_ip.get(key, 0) - n
        if count > 0:
            self._per_ip[key] = count
        else:
            self._per_ip.pop(key, None)
        total = self._total.get(scope, 0) - n
        if total > 0:
            self._total[scope] = total
        else:
            self._total.pop(scope, None)

    def held(self, scope: str, ip: str | None = None) -> int:
        """Slots held in ``scope`` (by ``ip`` when given)."""
        if ip is None:
            return self._total.get(scope, 0)
        return self._per_ip.get((scope, ip), 0)


class LocalCounters:
    """``Counters`` of a single-process daemon: the tables in this process."""

    def __init__(self, limits: Limits) -> None:
        self.slots = ConnectionSlots()
        self.throttle = AuthThrottle(limits.auth_failure_delay, limits.auth_failure_delay_max)

    async def acquire(self, scope: str, ip: str, max_total: int, max_per_ip: int) -> bool:
        """``Counters.acquire``: the in-process table, no suspension."""
        return self.slots.acquire(scope, ip, max_total, max_per_ip)

    def release(self, scope: str, ip: str) -> None:
        """``Counters.release``."""
        self.slots.release(scope, ip)

    async def auth_failure(self, ip: str) -> float:
        """``Counters.auth_failure``: the delay in seconds from ``AuthThrottle``."""
        return self.throttle.record_failure(ip)

    async def close(self) -> None:
        """``Counters.close``: nothing to let go of."""
        return None
