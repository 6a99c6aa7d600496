"""Blocking DNS for the verification libraries, answered by the event loop's resolver.

pyspf and dkimpy ask DNS through synchronous callbacks.  They run on a worker
thread (``run_with_dns``); each lookup is handed to the event loop as a
coroutine of our one shared ``Resolver`` and the thread waits for its answer.
The loop never blocks: a slow DNS server costs a waiting thread, not a stalled
server.  Answers are memoised for the transaction (SPF, DKIM, DMARC and ARC
often ask the same names), on top of the resolver's TTL cache.

Invariants: a lookup returns ``[]`` for NXDOMAIN and NODATA (RFC 7208 §4.3
and RFC 6376 §6.1.2 treat both as "no record"); a transient failure raises
``TempDnsError`` (SERVFAIL, timeout: the callers' *temperror*).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, TypeVar

import dns.exception

from mailserver.dns.resolver import DnsError

if TYPE_CHECKING:
    from mailserver.dns.resolver import Mx, Resolver


class TempDnsError(Exception):
    """A lookup failed transiently (RFC 7208 §2.6.6 temperror, RFC 6376 §6.1.2 TEMPFAIL)."""


class NotCached(Exception):
    """A cache-only ``ThreadDns`` was asked what the resolver does not hold fresh."""


class ThreadDns:
    """Blocking lookups for a worker thread, each answered on ``loop`` by ``resolver``.

    ``timeout``: seconds the thread waits for one answer (the resolver has
    its own lifetime; this is the backstop).  One instance per transaction
    (its memo is that transaction's cache); not for use on the loop's thread,
    unless ``cache_only``: then only answers the resolver holds fresh are
    given, and any other question raises ``NotCached`` and sets ``missed``
    (so that a caller can tell even if a library swallowed the exception).
    """

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop, *,
                 timeout: float, cache_only: bool = False) -> None:
        self.resolver = resolver
        self.loop = loop
        self.timeout = timeout
        self.cache_only = cache_only
        self.missed = False
        self._memo: dict[tuple[str, str], list[object]] = {}

    def _ask(self, name: str, rdtype: str,
             make: Callable[[str], Awaitable[list[object]]]) -> list[object]:
        key = (name.lower().rstrip("."), rdtype)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        # An answer the resolver holds fresh costs no trip through the loop
        # (each trip: a wake-up of the loop and of this thread, ~0.1 ms of
        # CPU and GIL hand-offs per question under load).
        peek = getattr(self.resolver, "cached", None)
        if peek is not None:
            try:
                cached = peek(key[0], rdtype)
            except DnsError as exc:
                if exc.temporary:
                    raise TempDnsError(str(exc)) from None
                cached = []  # NXDOMAIN, as _answer
            if cached is not None:
                self._memo[key] = cached
                return cached
        if self.cache_only:
            self.missed = True
            raise NotCached(f"{key[0]} {rdtype}")
        future = asyncio.run_coroutine_threadsafe(_answer(make, key[0]), self.loop)
        try:
            answer = future.result(self.timeout)
        except (concurrent.futures.TimeoutError, TimeoutError):
            future.cancel()
            raise TempDnsError(f"{key[0]} {rdtype}: timed out") from None
        self._memo[key] = answer
        return answer

    def txt(self, name: str) -> list[str]:
        """Each TXT record of ``name``, its character-strings joined."""
        return self._ask(name, "TXT", self.resolver.txt)  # type: ignore[arg-type,return-value]

    def a(self, name: str) -> list[str]:
        return self._ask(name, "A", self.resolver.a)  # type: ignore[arg-type,return-value]

    def aaaa(self, name: str) -> list[str]:
        return self._ask(name, "AAAA", self.resolver.aaaa)  # type: ignore[arg-type,return-value]

    def mx(self, name: str) -> list[Mx]:
        return self._ask(name, "MX", self.resolver.mx)  # type: ignore[arg-type,return-value]

    def ptr(self, name: str) -> list[str]:
        return self._ask(name, "PTR", self.resolver.ptr)  # type: ignore[arg-type,return-value]


def cache_only(resolver: Resolver) -> ThreadDns:
    """A ``ThreadDns`` for the event loop's own thread (called there): the
    answers ``resolver`` holds fresh, ``NotCached`` for any other question."""
    return ThreadDns(resolver, asyncio.get_running_loop(), timeout=0.0, cache_only=True)


async def _answer(make: Callable[[str], Awaitable[list[object]]], name: str) -> list[object]:
    try:
        return await make(name)
    except DnsError as exc:
        if exc.temporary:
            raise TempDnsError(str(exc)) from None
        return []  # NXDOMAIN: no such record
    except dns.exception.DNSException:
        return []  # not a valid name (an over-long label): nothing can be there


_T = TypeVar("_T")


async def run_with_dns(resolver: Resolver, executor: Executor, timeout: float,
                       work: Callable[[ThreadDns], _T]) -> _T | None:
    """``work(dns)`` on a thread of ``executor``, its lookups answered by ``resolver``
    on this loop; None when it takes longer than ``timeout`` seconds (the
    thread then finishes in the background, each lookup bounded by ``timeout``
    and the resolver's own lifetime; the caller no longer waits for it).
    Exceptions of ``work`` propagate."""
    loop = asyncio.get_running_loop()
    dns = ThreadDns(resolver, loop, timeout=timeout)
    future = loop.run_in_executor(executor, work, dns)
    try:
        async with asyncio.timeout(timeout):
            return await future
    except TimeoutError:
        return None


async def in_thread(executor: Executor | None, work: Callable[[], _T]) -> _T:
    """``work()`` on ``executor`` (None: the loop's default), awaited."""
    return await asyncio.get_running_loop().run_in_executor(executor, work)
