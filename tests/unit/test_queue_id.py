"""Queue ids (``mailserver.protocol.queue_id``): unique, sortable by time, one format."""

from __future__ import annotations

import os
import re

from mailserver.protocol import queue_id as ids
from mailserver.protocol.queue_id import LENGTH, QueueIds, created_ms, new_queue_id

SHAPE = re.compile(r"[0-9BCDFGHJKLMNPQRSTVWXZ]{17}")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_shape_and_distinct() -> None:
    made = [new_queue_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(SHAPE.fullmatch(i) for i in made) and LENGTH == 17
    assert made == sorted(made)  # one process: strictly increasing
    assert all(ids.VALID.fullmatch(i) for i in made)


def test_sorts_by_creation_time_and_encodes_it() -> None:
    clock = Clock(1_700_000_000.5)
    gen = QueueIds(clock, pid=4_194_303)  # Linux's largest pid
    first = gen()
    clock.now += 0.001
    second = gen()
    assert first < second
    assert created_ms(first) == 1_700_000_000_500
    assert created_ms(second) == 1_700_000_000_501
    # An id from a smaller pid a millisecond later still sorts later: time comes first.
    assert first < QueueIds(clock, pid=1)()


def test_same_millisecond_and_clock_going_back_stay_unique_and_increasing() -> None:
    clock = Clock(1_700_000_000.0)
    gen = QueueIds(clock, pid=42)
    made = [gen() for _ in range(30**3 + 5)]  # more than one millisecond's sequence
    clock.now -= 60  # the wall clock is stepped back
    made += [gen() for _ in range(5)]
    assert len(set(made)) == len(made) and made == sorted(made)
    assert created_ms(made[30**3]) == 1_700_000_000_001  # borrowed the next millisecond


def test_processes_at_the_same_instant_differ_by_pid() -> None:
    clock = Clock(1_700_000_000.0)
    a, b = QueueIds(clock, pid=100), QueueIds(clock, pid=101)
    assert a() != b()


def test_a_forked_child_gets_its_own_pid_field() -> None:
    parent = new_queue_id()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its first id and leave at once
        os.write(w, new_queue_id().encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert SHAPE.fullmatch(child) and child[9:14] != parent[9:14]


def test_ids_of_earlier_versions_are_still_valid() -> None:
    for old in ("01a24211d021f391b12b", "9JM2T0000012", "00000000000BAD"):
        assert ids.VALID.fullmatch(old)
        assert created_ms(old) is None
    for bad in ("", "a b", "x\r\n", "é", "a" * 65, "../x"):
        assert not ids.VALID.fullmatch(bad)
