"""A spray of 100,000 distinct client addresses (issue #11 §4): every table
the limits keep stays within its bound (the memory of each is proportional
to its keys), whatever the number of addresses."""

from __future__ import annotations

import asyncio
import resource

from mailserver.checks.limits import TrustedNetworks
from mailserver.config import Limits
from mailserver.counters import ConnectionRate, LocalCounters
from mailserver.counters.logins import LoginGuard

SPRAY = 100_000
BOUND = 20_000  # the tables' max_keys here (100,000 in the daemon)


def test_a_spray_of_distinct_addresses_stays_bounded() -> None:
    counters = LocalCounters(Limits(trusted_networks=()))
    for table in counters.rates.tables.values():
        table.max_keys = BOUND
    rate = ConnectionRate(300, 900, max_keys=BOUND, trusted=("10.0.0.0/8",))
    guard = LoginGuard(counters, Limits(trusted_networks=()))
    trusted = TrustedNetworks(("10.0.0.0/8",))

    peak: list[int] = []

    async def spray() -> None:
        for n in range(SPRAY):
            if n == 2 * BOUND:  # the tables are full and evicting from here on
                peak.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            ip = f"{(n >> 16) % 224 + 1}.{(n >> 8) & 255}.{n & 255}.{n % 7}"
            rate.admit(ip)
            await counters.rate((("minute", 100, "msg:" + ip), ("day", 10_000, "msg:" + ip)))
            await guard.failed(ip, f"user{n}@example.test")
            assert ip not in trusted

    asyncio.run(spray())
    assert len(rate.table) <= BOUND
    assert all(len(t) <= BOUND for t in counters.rates.tables.values())
    assert len(trusted._cache) <= 4096
    # The last 60,000 addresses evicted older ones: the process did not grow
    # by what keeping them would take (~30 MiB).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak[0] < 8 << 10  # KiB
