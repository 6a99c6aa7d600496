"""Where mail for a domain goes: MX ordering and the implicit MX (RFC 5321 §5.1).

* MX records are tried in ascending preference; equal preferences in random
  order (load spreading, RFC 5321 §5.1).
* No MX records: the domain itself is the single host ("implicit MX").
* A single MX with host "." is a null MX (RFC 7505 §3): the domain accepts no
  mail; fail at once (``NullMx``), do not fall back to A/AAAA.
* ``ip_literal`` tells an IP address from a host name, so that addresses are
  used as they are instead of being looked up in the DNS: a smart host given
  by address, an address-literal domain (RFC 5321 §4.1.3), and an MX record
  that holds an address although RFC 5321 §5.1 and RFC 1035 §3.3.9 want a
  name (Postfix warns "numeric domain name in resource data of MX record" and
  uses the address; so do we, and the caller logs it).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence

from mailserver.dns.resolver import Mx, Resolver


class NullMx(Exception):
    """The domain publishes a null MX (RFC 7505): a permanent failure (5.1.10, RFC 7505 §4.2)."""


def ip_literal(host: str) -> str | None:
    """The IP address ``host`` stands for, or None when it is not an address.

    Accepts a bare address ("192.0.2.1", "2001:db8::1") and the address
    literals of RFC 5321 §4.1.3: ``"[" IPv4-address-literal "]"`` and
    ``"[IPv6:" IPv6-addr "]"``.  Anything else in brackets (a general address
    literal, or an IPv6 address without its tag) is not an address we use.
    """
    text = host.strip()
    bracketed = text.startswith("[") and text.endswith("]")
    want: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address] | None = None
    if bracketed:
        text = text[1:-1]
        want = ipaddress.IPv4Address
        if text[:5].lower() == "ipv6:":
            text, want = text[5:], ipaddress.IPv6Address
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if want is not None and not isinstance(addr, want):
        return None
    return str(addr)


def order_mx(records: Sequence[Mx], rng: random.Random | None = None) -> list[str]:
    """Host names in the order to try them: by preference, shuffled within one preference.

    Duplicate hosts keep their first (lowest-preference) place.  Raises
    ``NullMx`` when the records are a null MX (RFC 7505 §3: one record, host
    "." — we also treat a "." among others as unusable and skip it).
    """
    if any(r.host == "" for r in records) and all(r.host == "" for r in records):
        raise NullMx("domain does not accept mail (null MX, RFC 7505)")
    rng = rng or random.Random()
    by_pref: dict[int, list[str]] = {}
    for r in records:
        if r.host:
            by_pref.setdefault(r.preference, []).append(r.host)
    hosts: list[str] = []
    for pref in sorted(by_pref):
        group = by_pref[pref]
        rng.shuffle(group)
        for h in group:
            if h not in hosts:
                hosts.append(h)
    return hosts


async def mail_hosts(resolver: Resolver, domain: str, rng: random.Random | None = None) -> list[str]:
    """The hosts to try for ``domain``, best first.

    Raises ``NullMx``; ``DnsError`` from the resolver (temporary or not) passes through.
    """
    records = await resolver.mx(domain)
    if not records:
        return [domain.lower().rstrip(".")]  # implicit MX, RFC 5321 §5.1
    return order_mx(records, rng)
