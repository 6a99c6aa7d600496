"""Where a message for a domain goes: the smart host, an address literal, or the MX hosts.

RFC 5321 §5.1: the MX hosts in order (``mailserver.dns.mx``), every address
of a host (IPv6 and IPv4).  A smart host (``OutboundSettings.smart_host``)
replaces MX resolution: every message goes to it; we connect to the
addresses our resolver gives for its name (``connect.py`` presents the name
for SNI and verification).

IP addresses are never looked up (``mailserver.dns.mx.ip_literal``): a smart
host given by address, an address-literal recipient domain (RFC 5321 §4.1.3:
``[192.0.2.1]``, ``[IPv6:2001:db8::1]``; a malformed one fails permanently)
and an MX record that holds an address instead of a name (RFC 5321 §5.1
forbids it; like Postfix we log ``mx_numeric_host`` and use the address).

``route_key`` names the route as the key of its pooled sessions and their
connection limit (``pool.py``).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import structlog

from mailserver.dns.mx import NullMx, ip_literal, mail_hosts
from mailserver.dns.resolver import DnsError, Resolver
from mailserver.queue.outcome import Outcome
from mailserver.queue.settings import OutboundSettings, SmartHost

_log = structlog.get_logger("mailserver.queue")


def route_key(settings: OutboundSettings, domain: str) -> Hashable:
    """Where mail for ``domain`` goes, as the key of its sessions and their limit:
    the smart host when there is one (all domains share it), else the domain."""
    sh = settings.smart_host
    if sh is not None:
        return ("smart", sh.host.lower(), sh.port)
    return ("mx", domain.lower())


class NoRoute(Exception):
    """No host to try: every recipient gets ``outcome`` with ``reply``."""

    def __init__(self, outcome: Outcome, reply: str) -> None:
        super().__init__(reply)
        self.outcome = outcome
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Route:
    """The hosts to try, in order, as ``(name, address, port)``, and how to talk to them."""

    targets: list[tuple[str, str, int]]
    require_tls: bool
    smart_host: SmartHost | None


async def resolve_route(
    settings: OutboundSettings, resolver: Resolver, domain: str, log: Any = None,
) -> Route:
    """The smart host, an address literal, or the domain's MX hosts (RFC 5321 §5.1).

    IP addresses are used as they are, never looked up.  Raises ``NoRoute``.
    ``log``: the caller's logger (bound to the message's ``queue_id``).
    """
    log = _log if log is None else log
    sh = settings.smart_host
    if sh is not None:
        return Route(await _smart_host_targets(resolver, sh), sh.tls != "none", sh)
    require = domain.lower() in settings.require_tls
    if domain.startswith("["):
        # RFC 5321 §4.1.3 address literal: straight to that address, no DNS.
        addr = ip_literal(domain)
        if addr is None:
            raise NoRoute(Outcome.PERMANENT,
                          f"550 5.1.2 {domain} is not an IPv4 or IPv6 address literal")
        return Route([(addr, addr, settings.smtp_port)], require, None)
    try:
        hosts = await mail_hosts(resolver, domain)
    except NullMx:
        raise NoRoute(Outcome.PERMANENT,
                      f"556 5.1.10 {domain} does not accept mail (null MX, RFC 7505)") from None
    except DnsError as exc:
        if exc.temporary:
            raise NoRoute(Outcome.TEMPORARY, f"451 4.4.3 DNS lookup failed: {exc}") from None
        raise NoRoute(Outcome.PERMANENT, f"550 5.1.2 {exc}") from None
    implicit = hosts == [domain.lower().rstrip(".")]
    targets: list[tuple[str, str, int]] = []
    dns_errors: list[DnsError] = []
    for host in hosts:
        if (addr := ip_literal(host)) is not None and not implicit:
            # RFC 5321 §5.1 wants a name here; like Postfix, warn and use the address.
            log.warning("mx_numeric_host", domain=domain, mx=host)
            targets.append((addr, addr, settings.smtp_port))
            continue
        try:
            addrs = await resolver.addresses(host)
        except DnsError as exc:
            dns_errors.append(exc)
            continue
        targets += [(host, a, settings.smtp_port) for a in addrs]
    if not targets:
        if implicit and not any(e.temporary for e in dns_errors):
            # RFC 5321 §5.1: no MX and no address: the domain cannot receive mail.
            raise NoRoute(Outcome.PERMANENT,
                          f"550 5.1.2 {domain} has no MX and no address records")
        raise NoRoute(Outcome.TEMPORARY,
                      f"451 4.4.4 no usable address for the mail hosts of {domain}")
    return Route(targets, require, None)


async def _smart_host_targets(resolver: Resolver, sh: SmartHost) -> list[tuple[str, str, int]]:
    """The smart host's addresses: an IP address as it is; a name through our resolver,
    or, when that fails, through the system's (a name only in /etc/hosts)."""
    addr = ip_literal(sh.host)
    if addr is not None:
        return [(addr, addr, sh.port)]
    try:
        addrs = await resolver.addresses(sh.host)
    except DnsError:
        addrs = []
    return [(sh.host, a, sh.port) for a in addrs] or [(sh.host, sh.host, sh.port)]
