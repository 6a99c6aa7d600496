"""DNS blocklists (DNSBL, RFC 5782) as a stage of the ``smtp`` listener.

Off by default.  ``[checks] dnsbl_reject`` zones refuse the client: every
RCPT gets ``550 5.7.1`` naming the zone (RCPT rather than the greeting, so
the refusal reaches the log with the envelope; ``postmaster`` is refused
too, as Postfix's ``reject_rbl_client`` does).  ``dnsbl_mark`` zones only
mark: the message gets an ``X-DNSBL`` field listing the zones that list
the client, for filters and the junk classifier.  Every result is logged
in Authentication-Results style (``dnsbl=<zone>:listed|pass|temperror``).

The query (RFC 5782 §2.1 IPv4, §2.4 IPv6): the client address's octets
(nibbles for IPv6) reversed under the zone; an A record in 127.0.0.0/8 means
listed (§2.1; the TXT reason is not fetched), no record means not listed, a
failed lookup counts as not listed (a blocklist outage must not stop mail),
and an answer outside 127/8 (§5: a zone answering everything, or an error
code such as Spamhaus's 127.255.255.x for a refused resolver) is ignored.
Results are kept per address for ``CACHE_SECONDS``, bounded.  Trusted
networks and clients that authenticated are not looked up.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

import structlog

from mailserver.checks.limits import TrustedNetworks
from mailserver.checks.stage import ACCEPT, CheckContext, RecipientFacts, Verdict, refuse
from mailserver.dns.resolver import DnsError, Resolver
from mailserver.errors import SmtpReply

log = structlog.get_logger("mailserver.checks")

#: Seconds a lookup result is reused, and addresses kept at most.
CACHE_SECONDS = 300.0
CACHE_SIZE = 10_000


def query_name(ip: str, zone: str) -> str | None:
    """The DNSBL name of ``ip`` under ``zone`` (RFC 5782 §2.1, §2.4), None
    for something that is not an IP address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr.version == 4:
        return ".".join(reversed(str(addr).split("."))) + "." + zone
    nibbles = addr.exploded.replace(":", "")
    return ".".join(reversed(nibbles)) + "." + zone


def is_listed(addresses: list[str]) -> bool:
    """Whether an answer means "listed": an address in 127.0.0.0/8 other than
    the error codes 127.255.255.0/24 (RFC 5782 §2.1, §5)."""
    for a in addresses:
        if a.startswith("127.") and not a.startswith("127.255.255."):
            return True
    return False


class DnsblCheck:
    """The stage (see the module docstring): ``reject`` and ``mark`` zones."""

    name = "dnsbl"

    def __init__(self, resolver: Resolver, *, reject: tuple[str, ...], mark: tuple[str, ...],
                 trusted: tuple[str, ...], clock: Callable[[], float] = time.monotonic) -> None:
        self.resolver = resolver
        self.reject = reject
        self.mark = mark
        self.trusted = TrustedNetworks(trusted)
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    async def results(self, ip: str) -> dict[str, str]:
        """``zone -> "listed" | "pass" | "temperror"`` for ``ip``."""
        now = self._clock()
        hit = self._cache.get(ip)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        # One zone after the other (stages stay free of asyncio, test_smtp_seams):
        # a few zones, each answer cached by the resolver for its TTL.
        found = {zone: await self._ask(ip, zone) for zone in self.reject + self.mark}
        self._cache[ip] = (now, found)
        self._cache.move_to_end(ip)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        log.info("dnsbl", client=ip, **{f"dnsbl_{z}": r for z, r in found.items()})
        return found

    async def _ask(self, ip: str, zone: str) -> str:
        name = query_name(ip, zone)
        if name is None:
            return "pass"
        try:
            return "listed" if is_listed(await self.resolver.a(name)) else "pass"
        except DnsError as exc:
            return "temperror" if exc.temporary else "pass"

    def _skip(self, ctx: CheckContext) -> bool:
        return ctx.auth_user is not None or ctx.peer_ip in self.trusted

    async def check_rcpt(self, ctx: CheckContext, rcpt: RecipientFacts) -> Verdict:
        """``550 5.7.1`` when a ``reject`` zone lists the client."""
        if not self.reject or self._skip(ctx):
            return ACCEPT
        found = await self.results(ctx.peer_ip)
        for zone in self.reject:
            if found.get(zone) == "listed":
                return refuse(SmtpReply(550, "5.7.1", f"Service unavailable; client "
                                        f"[{ctx.peer_ip}] blocked using {zone}"),
                              f"dnsbl {zone}")
        return ACCEPT

    async def check_data(self, ctx: CheckContext, content: bytes) -> Verdict:
        """An ``X-DNSBL`` field when a ``mark`` zone lists the client."""
        if not self.mark or self._skip(ctx):
            return ACCEPT
        found = await self.results(ctx.peer_ip)
        listed = [z for z in self.mark if found.get(z) == "listed"]
        if not listed:
            return ACCEPT
        return Verdict(headers=(("X-DNSBL", f"{ctx.peer_ip} listed by {', '.join(listed)}"),),
                       reason="dnsbl mark")
