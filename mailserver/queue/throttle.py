"""Per destination: how many sessions at once, and backing off when the
remote asks us to (issue #11 §3 "Outbound").

Receivers that think we send too much say so with ``421`` (RFC 5321 §3.8,
§4.2.2: closing the session) or a ``4.7.x`` status (RFC 3463 §3.8: policy,
e.g. Gmail's 421 4.7.28 "unusual rate").  Sending on at the same pace makes
it worse (and gets us listed), so each destination domain has

* a concurrency limit that starts at ``max_connections_per_domain`` and is
  halved at each such answer (at least 1), then grows back by one per
  successful round (additive increase, multiplicative decrease: TCP's rule
  for sharing a link, RFC 5681 §3.1);
* a pause after each such answer: no new session to that domain for 60 s,
  doubled at each further one in a row up to an hour; the messages due
  meanwhile are deferred without a connection (``451 4.4.5``) and retried
  on their own schedule.  A successful round ends the pause streak.

State is per process (the queue runs in one), bounded: a destination back
at full speed and idle is forgotten.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: Seconds of the first pause, and the longest.
FIRST_PAUSE = 60.0
MAX_PAUSE = 3600.0


def is_throttling(reply: str) -> bool:
    """Whether a remote reply asks us to slow down: ``421`` (any enhanced
    code) or a temporary ``4.7.x`` policy status (RFC 3463 §3.8)."""
    return reply.startswith("421") or (reply[:1] == "4" and reply[4:8].startswith("4.7."))


@dataclass(slots=True)
class _Destination:
    limit: float
    active: int = 0
    paused_until: float = 0.0
    streak: int = 0  # throttling answers in a row


class DestinationThrottle:
    """Sessions per destination with back-off (see the module docstring).
    ``maximum``: the configured ``max_connections_per_domain``; ``clock``:
    monotonic seconds."""

    def __init__(self, maximum: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = maximum
        self._clock = clock
        self._dest: dict[str, _Destination] = {}
        self._changed = asyncio.Condition()

    def paused(self, domain: str) -> float:
        """Seconds until ``domain`` may be tried again (0: now)."""
        d = self._dest.get(domain)
        return 0.0 if d is None else max(0.0, d.paused_until - self._clock())

    def limit(self, domain: str) -> int:
        """Sessions ``domain`` may have at once now."""
        d = self._dest.get(domain)
        return self.maximum if d is None else max(1, int(d.limit))

    async def acquire(self, domain: str) -> None:
        """Wait for a session slot of ``domain`` under its current limit."""
        async with self._changed:
            while True:  # looked up anew after each wait: a release may forget it
                d = self._dest.get(domain)
                if d is None:
                    d = self._dest[domain] = _Destination(float(self.maximum))
                if d.active < max(1, int(d.limit)):
                    break
                await self._changed.wait()
            d.active += 1

    async def release(self, domain: str, replies: Iterable[str], delivered: bool) -> None:
        """The round of ``domain`` ended: ``replies`` the remote's answers (a
        throttling one halves the limit and pauses the domain), ``delivered``
        whether something got through (the limit grows by one)."""
        async with self._changed:
            d = self._dest[domain]
            d.active -= 1
            if any(is_throttling(r) for r in replies):
                d.limit = max(1.0, d.limit / 2)
                d.streak += 1
                d.paused_until = self._clock() + min(MAX_PAUSE,
                                                     FIRST_PAUSE * 2 ** (d.streak - 1))
            elif delivered:
                d.limit = min(float(self.maximum), d.limit + 1)
                d.streak = 0
            if d.active == 0 and d.limit >= self.maximum and d.streak == 0:
                del self._dest[domain]  # back at full speed: forget it
            self._changed.notify_all()
