"""The retry schedule: a pure function of the attempt count (after mox).

RFC 5321 §4.5.4.1: the retry interval should be at least 30 minutes after the
first attempts and the sender should give up after at least 4-5 days.  Jitter
spreads retries of many messages deferred at once (a receiver that was down)
so they do not all hit it again in the same second.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def retry_delay(
    attempts: int, schedule: Sequence[float], jitter: float = 0.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (``attempts`` >= 1).

    Takes ``schedule[attempts - 1]``; past the end of the schedule its last
    entry repeats.  With ``jitter`` f in [0, 1) the delay is scaled by a
    uniform factor in [1 - f, 1 + f].  Raises ValueError for ``attempts`` < 1
    or an empty schedule.
    """
    if attempts < 1:
        raise ValueError("attempts counts failed attempts and starts at 1")
    if not schedule:
        raise ValueError("empty backoff schedule")
    delay = float(schedule[min(attempts, len(schedule)) - 1])
    if jitter:
        r = (rng or random).uniform(-jitter, jitter)
        delay *= 1.0 + r
    return delay


def next_attempt(
    now: float,
    created: float,
    attempts: int,
    schedule: Sequence[float],
    max_age: float,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float | None:
    """Unix time of the next attempt after ``attempts`` failed ones, or None to give up.

    Gives up when the message is already older than ``max_age`` seconds or the
    next attempt would come after ``created + max_age`` (then the last try is at
    the deadline, not past it).
    """
    deadline = created + max_age
    if now >= deadline:
        return None
    return min(now + retry_delay(attempts, schedule, jitter, rng), deadline)
