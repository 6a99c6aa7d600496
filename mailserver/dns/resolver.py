"""The resolver interface and its implementation on ``dns.asyncresolver``.

Answers are cached for their TTL (RFC 1035 §3.2.1; RFC 2308 §5 for negative
answers, which we cache for at most ``NEGATIVE_TTL_MAX``), so a burst of
messages to one domain asks the network once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.rdatatype
import dns.resolver

from mailserver.errors import MailserverError

#: Longest time a negative answer (NXDOMAIN / no data) is remembered, seconds.
NEGATIVE_TTL_MAX = 300.0
#: Cap on positive TTLs, seconds (a record with a year-long TTL still gets re-read).
TTL_MAX = 86400.0
#: Entries kept before the cache is cleared of expired ones.
CACHE_SIZE = 10000


class DnsError(MailserverError):
    """A lookup failed.  ``temporary``: SERVFAIL, timeout, no nameserver (retry later);
    otherwise the name does not exist (NXDOMAIN), a permanent condition."""

    def __init__(self, text: str, *, temporary: bool) -> None:
        super().__init__(text)
        self.temporary = temporary


@dataclass(frozen=True, slots=True)
class Mx:
    """One MX record (RFC 5321 §5.1): lower ``preference`` is tried first.
    ``host`` is absolute without the trailing dot; ``"."`` stays ``""`` (null MX)."""

    preference: int
    host: str


class Resolver(Protocol):
    """What outbound delivery needs from DNS.  Names are without trailing dot.

    Each method returns ``[]`` when the name exists but has no such records
    (NOERROR/NODATA), raises ``DnsError(temporary=False)`` when the name does
    not exist, and ``DnsError(temporary=True)`` on any transient failure.
    """

    async def mx(self, domain: str) -> list[Mx]: ...

    async def addresses(self, host: str) -> list[str]:
        """IPv6 and IPv4 addresses (AAAA first, then A) as strings."""
        ...

    async def txt(self, name: str) -> list[str]:
        """Each TXT record's character-strings joined (RFC 7208 §3.3 style)."""
        ...

    async def a(self, host: str) -> list[str]:
        """IPv4 addresses (A records) as strings (SPF's ``a``/``mx`` terms, RFC 7208 §5)."""
        ...

    async def aaaa(self, host: str) -> list[str]:
        """IPv6 addresses (AAAA records) as strings."""
        ...

    async def ptr(self, name: str) -> list[str]:
        """PTR targets of ``name`` (an ``in-addr.arpa``/``ip6.arpa`` name), without final dot."""
        ...

    async def srv(self, name: str) -> list[str]:
        """SRV records of ``name`` as ``"priority weight port target."`` (RFC 2782)."""
        ...

    async def tlsa(self, name: str) -> tuple[list[str], bool]:
        """TLSA records of ``name`` in presentation format (``"3 1 1 ab12..."``, RFC
        6698 §2.2) and whether the answer came with the AD bit (RFC 4035 §3.2.3:
        the configured resolver validated it; DANE, RFC 7672 §2.1)."""
        ...


class DnsPythonResolver:
    """``Resolver`` on ``dns.asyncresolver`` with a TTL cache.

    ``nameserver``/``port``: ask that server (tests; a local recursor) instead
    of the system's ``/etc/resolv.conf``.  ``timeout``: seconds per lookup.
    """

    def __init__(
        self, nameserver: str | None = None, port: int = 53, *, timeout: float = 10.0
    ) -> None:
        if nameserver is None:
            self._resolver = dns.asyncresolver.Resolver()
        else:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [nameserver]
            self._resolver.port = port
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(timeout, 3.0)
        # TLSA queries (DANE) ask with AD set (RFC 6840 §5.7), so that a validating
        # resolver reports validation; the other queries stay as they were.
        self._dnssec = dns.asyncresolver.Resolver(configure=False)
        self._dnssec.nameservers = list(self._resolver.nameservers)
        self._dnssec.port = self._resolver.port
        self._dnssec.lifetime = self._resolver.lifetime
        self._dnssec.timeout = self._resolver.timeout
        self._dnssec.flags = dns.flags.RD | dns.flags.AD
        self._cache: dict[tuple[str, str], tuple[float, object]] = {}

    async def _query(self, name: str, rdtype: str) -> tuple[list[object], float]:
        """``(rdata list, ttl)``; NODATA gives ``([], negative ttl)``."""
        key = (name.lower().rstrip("."), rdtype)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], DnsError):
                raise hit[1]
            return hit[1], 0.0  # type: ignore[return-value]
        try:
            answer = await self._resolver.resolve(
                dns.name.from_text(key[0]), rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            err = DnsError(f"{key[0]}: no such domain", temporary=False)
            self._remember(key, now + NEGATIVE_TTL_MAX, err)
            raise err from None
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsError(f"{key[0]} {rdtype}: {exc}", temporary=True) from None
        except dns.exception.DNSException as exc:
            raise DnsError(f"{key[0]} {rdtype}: {exc}", temporary=True) from None
        if answer.rrset is None:
            ttl = NEGATIVE_TTL_MAX
            records: list[object] = []
        else:
            ttl = min(float(answer.rrset.ttl), TTL_MAX)
            records = list(answer.rrset)
        self._remember(key, now + ttl, records)
        return records, ttl

    def _remember(self, key: tuple[str, str], expires: float, value: object) -> None:
        if len(self._cache) >= CACHE_SIZE:
            now = time.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
        self._cache[key] = (expires, value)

    def cached(self, name: str, rdtype: str) -> list[Any] | None:
        """A fresh cached answer for ``name``/``rdtype`` ("TXT", "A", "AAAA",
        "MX", "PTR") as the method of that name returns it, without I/O;
        None when not cached.  Raises the cached DnsError of a negative answer.
        Any thread may ask (one dict read): the SMTP checks' worker threads
        use it to skip a round trip through the event loop (``dns/bridge.py``)."""
        convert = _CONVERT.get(rdtype)
        hit = self._cache.get((name.lower().rstrip("."), rdtype))
        if convert is None or hit is None or hit[0] <= time.monotonic():
            return None
        if isinstance(hit[1], DnsError):
            raise hit[1]
        return convert(hit[1])  # type: ignore[arg-type]

    async def mx(self, domain: str) -> list[Mx]:
        records, _ = await self._query(domain, "MX")
        return _mx(records)

    async def addresses(self, host: str) -> list[str]:
        out: list[str] = []
        errors: list[DnsError] = []
        for rdtype in ("AAAA", "A"):
            try:
                records, _ = await self._query(host, rdtype)
            except DnsError as exc:
                errors.append(exc)
                continue
            out.extend(r.address for r in records)  # type: ignore[attr-defined]
        if not out and errors:
            # Both failed: prefer the transient diagnosis (a retry may help).
            raise next((e for e in errors if e.temporary), errors[0])
        return out

    async def txt(self, name: str) -> list[str]:
        records, _ = await self._query(name, "TXT")
        return _txt(records)

    async def _addresses_of(self, host: str, rdtype: str) -> list[str]:
        records, _ = await self._query(host, rdtype)
        return _addresses(records)

    async def a(self, host: str) -> list[str]:
        return await self._addresses_of(host, "A")

    async def aaaa(self, host: str) -> list[str]:
        return await self._addresses_of(host, "AAAA")

    async def ptr(self, name: str) -> list[str]:
        records, _ = await self._query(name, "PTR")
        return _ptr(records)

    async def srv(self, name: str) -> list[str]:
        records, _ = await self._query(name, "SRV")
        return [r.to_text() for r in records]  # type: ignore[attr-defined]

    async def tlsa(self, name: str) -> tuple[list[str], bool]:
        key = (name.lower().rstrip("."), "TLSA+AD")
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], DnsError):
                raise hit[1]
            return hit[1]  # type: ignore[return-value]
        try:
            answer = await self._dnssec.resolve(
                dns.name.from_text(key[0]), "TLSA", search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            err = DnsError(f"{key[0]}: no such domain", temporary=False)
            self._remember(key, now + NEGATIVE_TTL_MAX, err)
            raise err from None
        except dns.exception.DNSException as exc:
            raise DnsError(f"{key[0]} TLSA: {exc}", temporary=True) from None
        secure = bool(answer.response.flags & dns.flags.AD)
        if answer.rrset is None:
            result: tuple[list[str], bool] = ([], secure)
            ttl = NEGATIVE_TTL_MAX
        else:
            result = ([r.to_text() for r in answer.rrset], secure)
            ttl = min(float(answer.rrset.ttl), TTL_MAX)
        self._remember(key, now + ttl, result)
        return result


def _mx(records: list[Any]) -> list[Mx]:
    out = []
    for r in records:
        host = r.exchange.to_text(omit_final_dot=True)
        host = "" if host in ("", ".", "@") else host.lower()  # "." is the root: null MX
        out.append(Mx(int(r.preference), host))
    return out


def _txt(records: list[Any]) -> list[str]:
    return [b"".join(r.strings).decode("utf-8", "replace") for r in records]


def _addresses(records: list[Any]) -> list[str]:
    return [r.address for r in records]


def _ptr(records: list[Any]) -> list[str]:
    return [r.target.to_text(omit_final_dot=True) for r in records]


#: How each record type's cached rdata become what the methods return.
_CONVERT: dict[str, Callable[[list[Any]], list[Any]]] = {
    "TXT": _txt, "A": _addresses, "AAAA": _addresses, "MX": _mx, "PTR": _ptr}
