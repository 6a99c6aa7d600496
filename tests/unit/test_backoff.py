"""The pure retry schedule (RFC 5321 §4.5.4.1)."""

from __future__ import annotations

import random

import pytest

from mailserver.queue.backoff import next_attempt, retry_delay
from mailserver.queue.settings import DEFAULT_BACKOFF, OutboundSettings

SCHED = (60.0, 300.0, 900.0)


@pytest.mark.parametrize(("attempts", "delay"), [(1, 60), (2, 300), (3, 900), (4, 900), (50, 900)])
def test_schedule_steps_then_repeats_last(attempts: int, delay: float) -> None:
    assert retry_delay(attempts, SCHED) == delay


def test_default_schedule_is_1m_5m_15m_30m_1h_then_2h() -> None:
    got = [retry_delay(n, DEFAULT_BACKOFF) for n in range(1, 9)]
    assert got == [60, 300, 900, 1800, 3600, 7200, 7200, 7200]
    assert OutboundSettings().max_age == 5 * 86400


def test_jitter_stays_within_fraction_and_varies() -> None:
    rng = random.Random(7)
    values = {retry_delay(2, SCHED, 0.1, rng) for _ in range(200)}
    assert all(270 <= v <= 330 for v in values)
    assert len(values) > 100


@pytest.mark.parametrize("bad", [0, -1])
def test_attempts_start_at_one(bad: int) -> None:
    with pytest.raises(ValueError):
        retry_delay(bad, SCHED)


def test_empty_schedule_refused() -> None:
    with pytest.raises(ValueError):
        retry_delay(1, ())
    with pytest.raises(ValueError):
        OutboundSettings(backoff=())


def test_next_attempt_is_capped_at_deadline_then_gives_up() -> None:
    created = 1000.0
    assert next_attempt(created + 10, created, 1, SCHED, max_age=3600) == created + 70
    # The last try happens at the deadline, not after it ...
    assert next_attempt(created + 3500, created, 9, SCHED, max_age=3600) == created + 3600
    # ... and after it there is none.
    assert next_attempt(created + 3600, created, 10, SCHED, max_age=3600) is None
    assert next_attempt(created + 9999, created, 1, SCHED, max_age=3600) is None
