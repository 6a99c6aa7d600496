"""The supervisor's counter service over its real unix socket (counters/service.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailserver.config import Limits
from mailserver.counters.client import RemoteCounters
from mailserver.counters.service import CounterService

LIMITS = Limits(auth_failure_delay=0.5, auth_failure_delay_max=8.0)


async def test_two_clients_share_slots_and_failures(tmp_path: Path) -> None:
    run = tmp_path / "run"
    service = await CounterService.start(run, LIMITS)
    a = await RemoteCounters.open(run, LIMITS)
    b = await RemoteCounters.open(run, LIMITS)
    try:
        assert await a.acquire("smtp", "192.0.2.1", 10, 2)
        assert await b.acquire("smtp", "192.0.2.1", 10, 2)
        assert not await a.acquire("smtp", "192.0.2.1", 10, 2)
        assert not await b.acquire("smtp", "192.0.2.1", 10, 2)
        b.release("smtp", "192.0.2.1")
        assert await a.acquire("smtp", "192.0.2.1", 10, 2)  # in order after the release
        # Failed logins: one table, answered with the delay of the n-th failure.
        assert await a.auth_failure("192.0.2.9") == 0.0
        assert await b.auth_failure("192.0.2.9") == 0.5
        assert await a.auth_failure("192.0.2.9") == 1.0
    finally:
        await a.close()
        await b.close()
        await service.close()


async def test_a_gone_client_gives_its_slots_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    service = await CounterService.start(run, LIMITS)
    a = await RemoteCounters.open(run, LIMITS)
    b = await RemoteCounters.open(run, LIMITS)
    try:
        assert await a.acquire("imap", "192.0.2.1", 2, 2)
        assert await a.acquire("imap", "192.0.2.2", 2, 2)
        assert not await b.acquire("imap", "192.0.2.3", 2, 2)  # listener full
        await a.close()  # as a dying worker's socket closes
        for _ in range(100):  # the service sees the EOF on its next loop pass
            if service.counters.slots.held("imap") == 0:
                break
            await asyncio.sleep(0.01)
        assert await b.acquire("imap", "192.0.2.3", 2, 2)
    finally:
        await b.close()
        await service.close()


async def test_a_release_not_held_is_ignored(tmp_path: Path) -> None:
    run = tmp_path / "run"
    service = await CounterService.start(run, LIMITS)
    a = await RemoteCounters.open(run, LIMITS)
    b = await RemoteCounters.open(run, LIMITS)
    try:
        assert await a.acquire("s", "192.0.2.1", 1, 1)
        b.release("s", "192.0.2.1")  # not b's slot: a must keep it
        assert not await b.acquire("s", "192.0.2.1", 1, 1)
    finally:
        await a.close()
        await b.close()
        await service.close()


async def test_without_the_service_counters_fail_open(tmp_path: Path) -> None:
    run = tmp_path / "run"
    service = await CounterService.start(run, LIMITS)
    a = await RemoteCounters.open(run, LIMITS)
    assert await a.acquire("t", "192.0.2.1", 1, 1)  # connected and served
    await service.close()  # the supervisor is gone: this worker is about to stop
    for _ in range(100):
        if a._link.transport is None:
            break
        await asyncio.sleep(0.01)
    assert await a.acquire("s", "192.0.2.1", 1, 1)
    assert await a.auth_failure("192.0.2.1") == 0.5
    await a.close()


async def test_spare_slots_spare_the_round_trip_and_go_back(tmp_path: Path,
                                                            monkeypatch: object) -> None:
    """Far from the limits a worker gets spare slots: a client that reconnects costs
    no round trip; unused spares go back to the service after ``SPARE_TTL``."""
    from mailserver.counters import client

    monkeypatch.setattr(client, "SPARE_TTL", 0.05)  # type: ignore[attr-defined]
    run = tmp_path / "run"
    service = await CounterService.start(run, LIMITS)
    a = await RemoteCounters.open(run, LIMITS)
    slots = service.counters.slots
    try:
        assert await a.acquire("smtp", "192.0.2.1", 100, 100)
        assert slots.held("smtp", "192.0.2.1") == client.WANT  # one used, the rest spare
        for _ in range(10):  # one connection per message: all from the spares
            a.release("smtp", "192.0.2.1")
            assert await a.acquire("smtp", "192.0.2.1", 100, 100)
            assert not a._link.waiting
        assert slots.held("smtp", "192.0.2.1") == client.WANT
        a.release("smtp", "192.0.2.1")
        for _ in range(100):  # the sweep gives every idle spare back
            if slots.held("smtp") == 0:
                break
            await asyncio.sleep(0.02)
        assert slots.held("smtp") == 0
    finally:
        await a.close()
        await service.close()
