"""The checks' thread-side DNS (``dns/bridge.py``): questions go through the
event loop's resolver, except answers the resolver holds fresh, which the
thread reads directly (``DnsPythonResolver.cached``) — same answers, errors
mapped the same way, and no trip through the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.dnsserver import DnsServer

from mailserver.dns.bridge import NotCached, ThreadDns, run_with_dns
from mailserver.dns.resolver import DnsError, DnsPythonResolver, Mx


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer()
    server.start()
    server.add("example.test", "TXT", "v=spf1 -all")
    server.add("example.test", "MX", "10 mx.example.test.")
    server.add("mx.example.test", "A", "127.0.0.1")
    yield server
    server.stop()


async def test_cached_answers_skip_the_loop(dns: DnsServer) -> None:
    resolver = DnsPythonResolver(dns.address, dns.port, timeout=5)
    assert resolver.cached("example.test", "TXT") is None
    txt, mx = await resolver.txt("example.test"), await resolver.mx("example.test")
    assert resolver.cached("Example.TEST.", "TXT") == txt == ["v=spf1 -all"]
    assert resolver.cached("example.test", "MX") == mx == [Mx(10, "mx.example.test")]
    with pytest.raises(DnsError):
        await resolver.txt("nowhere.test")
    with pytest.raises(DnsError) as cached_error:
        resolver.cached("nowhere.test", "TXT")
    assert not cached_error.value.temporary

    # The thread's lookups of cached names come back while the loop is busy
    # (blocked here on purpose): they never needed it.
    loop = asyncio.get_running_loop()
    thread_dns = ThreadDns(resolver, loop, timeout=2)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: (thread_dns.txt("example.test"),
                                      thread_dns.mx("example.test"),
                                      thread_dns.txt("nowhere.test")))
        got = future.result(5)  # the loop does not run during this wait
    assert got == (["v=spf1 -all"], [Mx(10, "mx.example.test")], [])
    # A name not cached goes through the loop, as before.
    dns.add("new.test", "A", "192.0.2.1")
    with ThreadPoolExecutor(1) as pool:
        answer = await run_with_dns(resolver, pool, 5, lambda d: d.a("new.test"))
    assert answer == ["192.0.2.1"]


async def test_cache_only_lookups_say_what_is_missing(dns: DnsServer) -> None:
    resolver = DnsPythonResolver(dns.address, dns.port, timeout=5)
    await resolver.txt("example.test")
    with pytest.raises(DnsError):
        await resolver.txt("nowhere.test")
    inline = ThreadDns(resolver, asyncio.get_running_loop(), timeout=2, cache_only=True)
    # Answered on the loop's own thread, without I/O: cached answers and NXDOMAIN.
    assert inline.txt("example.test") == ["v=spf1 -all"]
    assert inline.txt("nowhere.test") == []
    assert not inline.missed
    queries = len(dns.queries)
    with pytest.raises(NotCached):
        inline.mx("example.test")
    assert inline.missed
    assert len(dns.queries) == queries  # nothing was asked
