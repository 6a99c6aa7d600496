"""Where mail for a domain goes: MX ordering and the implicit MX (RFC 5321 §5.1).

* MX records are tried in ascending preference; equal preferences in random
  order (load spreading, RFC 5321 §5.1).
* No MX records: the domain itself is the single host ("implicit MX").
* A single MX with host "." is a null MX (RFC 7505 §3): the domain accepts no
  mail; fail at once (``NullMx``), do not fall back to A/AAAA.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from mailserver.dns.resolver import Mx, Resolver


class NullMx(Exception):
    """The domain publishes a null MX (RFC 7505): a permanent failure (5.1.10, RFC 7505 §4.2)."""


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
