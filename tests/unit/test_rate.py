"""The rate table (counters/rate.py): sliding estimate, refusals, bounded memory."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.counters.rate import RateTable


def test_limit_within_a_window_then_recovery() -> None:
    table = RateTable(60.0)
    assert all(table.count("192.0.2.1", 0.0, limit=3) for _ in range(3))
    assert not table.count("192.0.2.1", 1.0, limit=3)
    assert table.peek("192.0.2.1", 1.0) == 3  # a refusal adds nothing
    assert table.count("192.0.2.2", 1.0, limit=3)  # another key
    # Half a window later the previous window still weighs half: 3 * 0.5 = 1.5.
    assert table.peek("192.0.2.1", 90.0) == 1.5
    assert table.count("192.0.2.1", 90.0, limit=3)
    assert not table.count("192.0.2.1", 90.0, limit=3)
    # Two idle windows later the key carries nothing.
    assert table.peek("192.0.2.1", 300.0) == 0


def test_no_burst_of_twice_the_limit_across_a_boundary() -> None:
    table = RateTable(60.0)
    accepted = sum(table.count("k", 59.0, limit=10) for _ in range(10))
    accepted += sum(table.count("k", 61.0, limit=10) for _ in range(10))
    assert accepted <= 11  # a fixed window would take 20


def test_a_request_larger_than_the_limit_leaves_no_key() -> None:
    table = RateTable(60.0)
    assert not table.count("k", 0.0, limit=2, n=3)
    assert len(table) == 0


def test_spraying_100000_addresses_keeps_the_table_bounded() -> None:
    table = RateTable(60.0, max_keys=1000)
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    for i in range(100_000):
        table.count(str(ipaddress.IPv4Address(base + i)), i * 0.001, limit=5)
        assert len(table) <= 1000
    assert len(table) == 1000
    # The newest keys survive; the oldest were evicted.
    assert table.peek(str(ipaddress.IPv4Address(base + 99_999)), 100.0) == 1
    assert table.peek(str(ipaddress.IPv4Address(base)), 100.0) == 0


def test_a_busy_key_survives_a_spray_while_it_keeps_being_touched() -> None:
    table = RateTable(60.0, max_keys=10)
    for i in range(1000):
        table.count(f"spray{i}", 0.0)
        table.count("abuser", 0.0)
    assert table.peek("abuser", 0.0) == 1000


def test_reset_and_prefix_reset_and_entries() -> None:
    table = RateTable(60.0)
    table.count("ip:192.0.2.1", 0.0)
    table.count("ip:192.0.2.2", 0.0, n=2)
    table.count("acct:alice", 0.0)
    assert [e.key for e in table.entries(1.0, "ip:")] == ["ip:192.0.2.1", "ip:192.0.2.2"]
    assert table.reset("acct:alice") and not table.reset("acct:alice")
    assert table.reset_prefix("ip:") == 2
    assert len(table) == 0


def test_dump_and_restore_round_trip() -> None:
    table = RateTable(86400.0)
    table.count("a", 1000.0, n=5)
    table.count("b", 2000.0)
    again = RateTable(86400.0)
    again.restore(table.dump(3000.0))
    assert again.peek("a", 3000.0) == 5 and again.peek("b", 3000.0) == 1


events = st.lists(
    st.tuples(st.sampled_from("abcd"), st.floats(0, 30), st.integers(1, 3)), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(events, st.integers(1, 20), st.integers(1, 4))
def test_never_exceeds_the_limit_and_stays_bounded(
    steps: list[tuple[str, float, int]], limit: int, max_keys: int
) -> None:
    table = RateTable(10.0, max_keys=max_keys)
    now = 0.0
    for key, advance, n in steps:
        now += advance
        before = table.peek(key, now)
        counted = table.count(key, now, limit=limit, n=n)
        after = table.peek(key, now)
        assert len(table) <= max_keys
        assert after <= limit + 1e-9 or not counted
        if counted:
            assert abs(after - (before + n)) < 1e-9
            assert after <= limit + 1e-9
        else:
            assert before + n > limit and abs(after - before) < 1e-9
