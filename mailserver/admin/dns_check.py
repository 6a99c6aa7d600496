"""``mailserver dns check DOMAIN``: what DNS says against what it should say.

For each record ``dns.domain_records`` would have published, the configured
resolver is asked and one ``Verdict`` given: ``present`` (as expected),
``missing`` (no such record), ``different`` (there is one, and it differs:
``found`` says what is there) or ``error`` (the lookup failed: a temporary
DNS failure is not a verdict on the record).  The comparison is on what
matters to mail, not on the text:

* MX: our hostname must be one of the domain's MX hosts (other hosts and
  preferences may be there too: a backup MX is the owner's business);
* SPF: exactly one ``v=spf1`` TXT record (RFC 7208 §4.5: more than one is a
  permerror), compared term by term;
* DKIM: the key (the ``p=`` tag, RFC 6376 §3.6.1) and its ``k=``;
* DMARC: a ``v=DMARC1`` record (RFC 7489 §6.3) with a ``p=`` tag; its
  policy and report address are the owner's choice, shown when they differ
  from ours;
* SRV: priority, weight, port and target (RFC 6186 §3).

Then the host: ``hostname`` has addresses (A/AAAA), each address's reverse
DNS (PTR) names it back (as receivers check, e.g. Gmail's "forward-confirmed
reverse DNS"), and the MX hosts' addresses are the hostname's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from mailserver.admin import dns
from mailserver.admin.views import DnsRecord
from mailserver.dns.resolver import DnsError, Resolver

PRESENT, MISSING, DIFFERENT, ERROR = "present", "missing", "different", "error"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check: ``what`` was looked up (``name TYPE``), its ``state``, what
    was ``expected`` and what was ``found`` (record texts), and a ``note``."""

    what: str
    state: str
    expected: str
    found: tuple[str, ...] = ()
    note: str = ""


def _tags(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip().lower()] = "".join(value.split())
    return out


async def _lookup(what: str, expected: str, query: object) -> tuple[list[str] | None, Verdict | None]:
    try:
        return await query, None  # type: ignore[misc]
    except DnsError as exc:
        if not exc.temporary:
            return [], None  # NXDOMAIN: no record
        return None, Verdict(what, ERROR, expected, note=str(exc))


async def check_records(records: Sequence[DnsRecord], resolver: Resolver,
                        hostname: str) -> list[Verdict]:
    """A verdict for every record of ``records`` (``dns.domain_records``)."""
    out: list[Verdict] = []
    for record in records:
        what = f"{record.name} {record.type}"
        if record.type == "MX":
            out.append(await _mx(record, what, resolver, hostname))
        elif record.type == "TXT":
            out.append(await _txt(record, what, resolver))
        elif record.type == "SRV":
            found, failed = await _lookup(what, record.value, resolver.srv(record.name))
            if failed is not None:
                out.append(failed)
                continue
            assert found is not None
            norm = [" ".join(f.split()).lower() for f in found]
            state = PRESENT if record.value.lower() in norm else (MISSING if not found
                                                                   else DIFFERENT)
            out.append(Verdict(what, state, record.value, tuple(found)))
        elif record.type == "CNAME":
            out.append(await _alias(record, what, resolver, hostname))
    return out


async def _alias(record: DnsRecord, what: str, resolver: Resolver, hostname: str) -> Verdict:
    """A name that must lead to this server: compared by address (a CNAME or
    the same A/AAAA records do equally well)."""
    try:
        theirs = set(await resolver.addresses(record.name))
        ours = set(await resolver.addresses(hostname))
    except DnsError as exc:
        if exc.temporary:
            return Verdict(what, ERROR, record.value, note=str(exc))
        theirs, ours = set(), set()
    if not theirs:
        return Verdict(what, MISSING, record.value)
    state = PRESENT if theirs & ours else DIFFERENT
    return Verdict(what, state, record.value, tuple(sorted(theirs)),
                   "" if state == PRESENT else f"does not lead to {hostname}'s addresses")


async def _mx(record: DnsRecord, what: str, resolver: Resolver, hostname: str) -> Verdict:
    try:
        mxs = await resolver.mx(record.name)
    except DnsError as exc:
        if exc.temporary:
            return Verdict(what, ERROR, record.value, note=str(exc))
        mxs = []
    found = tuple(f"{m.preference} {m.host}." for m in mxs)
    if not mxs:
        return Verdict(what, MISSING, record.value)
    if any(m.host.lower() == hostname.lower() for m in mxs):
        return Verdict(what, PRESENT, record.value, found)
    return Verdict(what, DIFFERENT, record.value, found, f"{hostname} is not among the MX hosts")


async def _txt(record: DnsRecord, what: str, resolver: Resolver) -> Verdict:
    found, failed = await _lookup(what, record.value, resolver.txt(record.name))
    if failed is not None:
        return failed
    assert found is not None
    if record.purpose == dns.SPF:
        spf = [t for t in found if t.lower().startswith("v=spf1")]
        if not spf:
            return Verdict(what, MISSING, record.value, tuple(found))
        if len(spf) > 1:
            return Verdict(what, DIFFERENT, record.value, tuple(spf),
                           "more than one SPF record (RFC 7208 §4.5: permerror)")
        same = spf[0].lower().split() == record.value.lower().split()
        return Verdict(what, PRESENT if same else DIFFERENT, record.value, tuple(spf))
    if record.purpose == dns.DKIM:
        want = _tags(record.value)
        keys = [t for t in found if "p" in _tags(t)]
        if not keys:
            return Verdict(what, MISSING, record.value, tuple(found))
        for text in keys:
            tags = _tags(text)
            if tags.get("p") == want.get("p") and tags.get("k", "rsa") == want.get("k", "rsa"):
                return Verdict(what, PRESENT, record.value, (text,))
        return Verdict(what, DIFFERENT, record.value, tuple(keys),
                       "the published key is not this server's key for the selector")
    if record.purpose == dns.DMARC:
        dmarc = [t for t in found if _tags(t).get("v", "").upper() == "DMARC1"]
        if not dmarc:
            return Verdict(what, MISSING, record.value, tuple(found))
        tags = _tags(dmarc[0])
        if "p" not in tags:
            return Verdict(what, DIFFERENT, record.value, tuple(dmarc),
                           "no p= tag (RFC 7489 §6.3: required)")
        want = _tags(record.value)
        note = "" if tags.get("rua") == want.get("rua") else "reports go elsewhere (rua)"
        return Verdict(what, PRESENT, record.value, tuple(dmarc), note)
    if record.purpose in (dns.MTA_STS, dns.TLSRPT):
        version = "STSv1" if record.purpose == dns.MTA_STS else "TLSRPTv1"
        mine = [t for t in found if _tags(t).get("v", "") == version]
        if not mine:
            return Verdict(what, MISSING, record.value, tuple(found))
        key = "id" if record.purpose == dns.MTA_STS else "rua"
        same = _tags(mine[0]).get(key) == _tags(record.value).get(key)
        return Verdict(what, PRESENT if same else DIFFERENT, record.value, tuple(mine),
                       "" if same else f"another {key}= than this server's")
    same = any(" ".join(t.split()) == " ".join(record.value.split()) for t in found)
    return Verdict(what, PRESENT if same else (MISSING if not found else DIFFERENT),
                   record.value, tuple(found))


def _reverse_name(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer


async def check_host(domain: str, hostname: str, resolver: Resolver) -> list[Verdict]:
    """``hostname``'s addresses, their reverse DNS, and the MX hosts' addresses."""
    out: list[Verdict] = []
    try:
        addresses = await resolver.addresses(hostname)
    except DnsError as exc:
        if exc.temporary:
            return [Verdict(f"{hostname} A/AAAA", ERROR, "addresses", note=str(exc))]
        addresses = []
    if not addresses:
        return [Verdict(f"{hostname} A/AAAA", MISSING, "an address of this server")]
    out.append(Verdict(f"{hostname} A/AAAA", PRESENT, "an address of this server",
                       tuple(addresses)))
    for address in addresses:
        name = _reverse_name(address)
        found, failed = await _lookup(f"{name} PTR", hostname, resolver.ptr(name))
        if failed is not None:
            out.append(failed)
            continue
        assert found is not None
        ok = any(p.lower().rstrip(".") == hostname.lower() for p in found)
        out.append(Verdict(f"{name} PTR", PRESENT if ok else (MISSING if not found
                                                               else DIFFERENT),
                           hostname, tuple(found), "" if ok else
                           f"reverse DNS of {address} should name {hostname}"))
    try:
        mx_hosts = [m.host for m in await resolver.mx(domain) if m.host]
    except DnsError:
        mx_hosts = []
    theirs: set[str] = set()
    for host in mx_hosts:
        try:
            theirs.update(await resolver.addresses(host))
        except DnsError:
            pass
    if mx_hosts:
        agree = bool(theirs & set(addresses))
        out.append(Verdict(f"{domain} MX -> A/AAAA", PRESENT if agree else DIFFERENT,
                           " ".join(sorted(addresses)), tuple(sorted(theirs)),
                           "" if agree else f"the MX hosts' addresses are not {hostname}'s"))
    return out
