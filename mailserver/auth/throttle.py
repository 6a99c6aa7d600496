"""Slowing down password guessing: a per-IP delay that grows with failures.

Shared by SMTP AUTH and IMAP LOGIN/AUTHENTICATE.  RFC 4954 §9, RFC 6409 §4.3
and RFC 3501 §11 leave brute-force defences to the server.  Per connection
both protocols hang up after ``max_auth_failures``; a client simply
reconnects, so this table remembers failures per client IP address *across
connections* (and listeners, and workers: the one table lives in
``counters/``, in the supervisor when there are several): the first failure costs nothing (typos), the
n-th waits ``base * 2**(n-2)`` seconds, at most ``maximum``, before its 535.
The count is forgotten ``FORGET_AFTER`` seconds after the last failure.

Bounded memory: at most ``MAX_ENTRIES`` addresses; the oldest are dropped
first (an attacker with many addresses gets no delay for the dropped ones,
which is the price of not growing without bound).  Successes do not reset
the count: one valid account must not let an attacker guess at others.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

#: Seconds without a failure after which an address starts over.
FORGET_AFTER = 900.0
#: Addresses remembered at most.
MAX_ENTRIES = 10000


class AuthThrottle:
    """Failure counts per IP.  ``clock``: monotonic seconds (tests may pass their own)."""

    def __init__(
        self, base: float, maximum: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.base = base
        self.maximum = maximum
        self._clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def failures(self, ip: str) -> int:
        """Failures remembered for ``ip`` (0 once forgotten)."""
        entry = self._failures.get(ip)
        if entry is None or self._clock() - entry[1] > FORGET_AFTER:
            return 0
        return entry[0]

    def record_failure(self, ip: str) -> float:
        """Count one failure of ``ip``; returns the delay (seconds) to impose now."""
        count = self.failures(ip) + 1
        self._failures[ip] = (count, self._clock())
        self._failures.move_to_end(ip)
        while len(self._failures) > MAX_ENTRIES:
            self._failures.popitem(last=False)
        return self.delay(count)

    def delay(self, count: int) -> float:
        """The delay for the ``count``-th failure: 0, base, 2*base, ... up to ``maximum``."""
        if count < 2 or self.base <= 0:
            return 0.0
        return min(self.maximum, self.base * 2.0 ** min(count - 2, 30))
