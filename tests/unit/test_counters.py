"""The connection-slot table (counters/): per scope, per (scope, ip)."""

from __future__ import annotations

from mailserver.counters import ConnectionSlots


def test_per_ip_and_total_limits() -> None:
    slots = ConnectionSlots()
    assert slots.acquire("smtp", "192.0.2.1", 3, 2)
    assert slots.acquire("smtp", "192.0.2.1", 3, 2)
    assert not slots.acquire("smtp", "192.0.2.1", 3, 2)  # per IP
    assert slots.acquire("smtp", "192.0.2.2", 3, 2)
    assert not slots.acquire("smtp", "192.0.2.3", 3, 2)  # per listener
    assert slots.acquire("imap", "192.0.2.1", 3, 2)  # another scope
    assert (slots.held("smtp"), slots.held("smtp", "192.0.2.1")) == (3, 2)


def test_a_refusal_takes_nothing_and_a_release_frees() -> None:
    slots = ConnectionSlots()
    assert slots.acquire("s", "a", 1, 1)
    assert not slots.acquire("s", "b", 1, 1)
    assert slots.held("s", "b") == 0
    slots.release("s", "a")
    assert slots.held("s") == 0 and slots.held("s", "a") == 0
    assert slots.acquire("s", "b", 1, 1)


def test_release_of_several_at_once() -> None:
    slots = ConnectionSlots()
    for _ in range(3):
        assert slots.acquire("s", "a", 5, 5)
    slots.release("s", "a", 3)
    assert slots.held("s") == 0


def test_spares_only_far_from_the_limits() -> None:
    slots = ConnectionSlots()
    # Far from both limits: the slot and 3 spares.
    assert slots.acquire_many("s", "a", 100, 100, 4) == 4
    assert slots.held("s", "a") == 4
    # Spares stop at half of each limit: 10 // 2 = 5 for this IP.
    assert slots.acquire_many("s", "b", 100, 10, 4) == 4
    assert slots.acquire_many("s", "b", 100, 10, 4) == 1  # 5 held: no more spares
    assert slots.held("s", "b") == 5
    # Small limits (3 // 2 = 1): never a spare, the limit stays exact.
    assert [slots.acquire_many("t", "c", 10, 3, 4) for _ in range(4)] == [1, 1, 1, 0]
    assert slots.acquire_many("u", "d", 1, 1, 4) == 1
    assert slots.acquire_many("u", "e", 1, 1, 4) == 0


def test_ipv6_clients_count_by_64_and_networks_by_48() -> None:
    from mailserver.counters import ConnectionRate, host_of, network_of

    assert host_of("192.0.2.7") == "192.0.2.7"
    assert network_of("192.0.2.7") == "192.0.2.0/24"
    assert host_of("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert network_of("2001:db8:1:2:aaaa::1") == "2001:db8:1::/48"
    assert host_of("not-an-ip") == network_of("not-an-ip") == "not-an-ip"
    # A client hopping through the addresses of its /64 is one client.
    rate = ConnectionRate(3, 100, clock=lambda: 1000.0)
    admitted = [rate.admit(f"2001:db8:1:2::{n:x}") for n in range(1, 6)]
    assert admitted == [True, True, True, False, False]
    assert rate.admit("2001:db8:1:3::1")  # the next /64: another client
    # ... and a /48 is one network.
    net = ConnectionRate(0, 4, clock=lambda: 1000.0)
    assert [net.admit(f"2001:db8:7:{n:x}::1") for n in range(6)] == [True] * 4 + [False] * 2
