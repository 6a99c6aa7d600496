"""SPF (RFC 7208) for the MAIL FROM and HELO identities, with pyspf over our resolver.

pyspf evaluates records (macros §7, the 10 DNS-querying terms and 2 void
lookups of §4.6.4, every result of §2.6) and asks DNS through its module
function ``spf.DNSLookup``.  That function is replaced once, here, by a
dispatcher to the ``ThreadDns`` of the calling thread (a thread-local set for
the duration of one evaluation): pyspf never reaches the network on its own,
and a thread without a bridge gets a temperror, not the system resolver.

Runs on a worker thread (``dns.bridge``).  ``SpfResult.result`` is one of
``RESULTS``.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from typing import Any

import spf

from mailserver.dns.bridge import TempDnsError, ThreadDns

#: RFC 7208 §2.6 results, as RFC 8601 §2.7.2 spells them.
RESULTS = ("none", "neutral", "pass", "fail", "softfail", "temperror", "permerror")

#: Seconds one evaluation may spend in DNS in all (RFC 7208 §4.6.4: at least 20).
QUERY_TIME = 20

_local = threading.local()


@dataclass(frozen=True, slots=True)
class SpfResult:
    """One identity's verdict: ``result`` (``RESULTS``), the ``domain`` checked
    (the MAIL FROM or HELO domain, "" when there was none to check), and
    ``reason`` (pyspf's explanation, for the A-R comment and the logs)."""

    result: str
    domain: str
    reason: str = ""


def _lookup(name: str, qtype: str, strict: Any = True, timeout: Any = None) -> list[Any]:
    """pyspf's ``DNSLookup``: ``[((name, qtype), value), ...]`` from this thread's bridge."""
    dns: ThreadDns | None = getattr(_local, "dns", None)
    if dns is None:
        raise spf.TempError("DNS: no resolver for this thread")
    try:
        if qtype == "TXT" or qtype == "SPF":
            if qtype == "SPF":
                return []  # type 99 is obsolete (RFC 7208 §3.1); only TXT is asked
            return [((name, qtype), [txt.encode("utf-8", "surrogateescape")])
                    for txt in dns.txt(name)]
        if qtype == "A":
            return [((name, qtype), addr) for addr in dns.a(name)]
        if qtype == "AAAA":
            return [((name, qtype), addr) for addr in dns.aaaa(name)]
        if qtype == "MX":
            return [((name, qtype), (mx.preference, mx.host)) for mx in dns.mx(name) if mx.host]
        if qtype == "PTR":
            return [((name, qtype), target) for target in dns.ptr(name)]
    except TempDnsError as exc:
        raise spf.TempError(f"DNS {exc}") from None
    return []


spf.DNSLookup = _lookup  # see the module docstring


def _check(dns: ThreadDns, ip: str, sender: str, helo: str, receiver: str) -> tuple[str, str]:
    _local.dns = dns
    try:
        result, _code, explanation = spf.query(
            i=ip, s=sender, h=helo, receiver=receiver or "unknown", querytime=QUERY_TIME,
        ).check()
    finally:
        _local.dns = None
    return str(result).lower(), str(explanation)


def _is_fqdn(helo: str) -> bool:
    if not helo or helo.startswith("[") or "." not in helo.strip("."):
        return False
    try:
        ipaddress.ip_address(helo)
    except ValueError:
        return True
    return False


def check_helo(dns: ThreadDns, ip: str, helo: str, receiver: str = "") -> SpfResult:
    """The HELO identity (RFC 7208 §2.3): ``none`` unless HELO names a domain
    (an address literal or a bare word cannot be checked).  ``receiver``: our
    host name (the ``%{r}`` macro, §7.3)."""
    if not _is_fqdn(helo):
        return SpfResult("none", "", "HELO is not a domain name")
    result, reason = _check(dns, ip, f"postmaster@{helo}", helo, receiver)
    return SpfResult(result, helo.lower(), reason)


def check_mail_from(dns: ThreadDns, ip: str, mail_from: str, helo: str, receiver: str = "",
                    helo_result: SpfResult | None = None) -> SpfResult:
    """The MAIL FROM identity (RFC 7208 §2.4); for the null reverse-path it is
    ``postmaster@`` the HELO domain, whose result (``helo_result``) is reused."""
    if mail_from in ("", "<>") or "@" not in mail_from:
        if helo_result is not None:
            return helo_result
        return check_helo(dns, ip, helo, receiver)
    local, _, domain = mail_from.rpartition("@")
    domain = domain.lower().rstrip(".")
    if not domain.isascii():  # SMTPUTF8: DNS asks A-labels (RFC 5890)
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return SpfResult("none", domain, "domain is not a valid IDN")
    result, reason = _check(dns, ip, f"{local}@{domain}", helo or domain, receiver)
    return SpfResult(result, domain, reason)
