"""The DNS records a local domain should publish for this server (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from mailserver.admin.views import DnsRecord
from mailserver.config import Listener

MX = "mail exchanger (RFC 5321 §5.1)"
SPF = "SPF (RFC 7208): only the MX hosts send for this domain"
DKIM = "DKIM public keys (RFC 6376 §3.6.2)"
DMARC = "DMARC (RFC 7489 §6.1): reports to postmaster"
SRV = "client autoconfiguration (RFC 6186 §3, RFC 8314 §5.1)"
MTA_STS = ("MTA-STS (RFC 8461 §3.1): senders must use verified TLS; the policy is served "
           "at https://mta-sts.DOMAIN/.well-known/mta-sts.txt")
TLSRPT = "SMTP TLS reporting (RFC 8460 §3): TLS failure reports to postmaster"
CLIENTS = ("names mail clients look up (Thunderbird autoconfig, Outlook autodiscover) and "
           "the MTA-STS policy host; HTTPS to this server's http listener")


def mta_sts_policy(hostname: str, mode: str = "testing", max_age: int = 604800) -> str:
    """The MTA-STS policy text (RFC 8461 §3.2): CRLF lines, our hostname as
    the one ``mx``; ``testing`` by default, so a mistake reports instead of
    stopping mail (set ``enforce`` once TLS-RPT reports are clean)."""
    return (f"version: STSv1\r\nmode: {mode}\r\nmx: {hostname}\r\n"
            f"max_age: {max_age}\r\n")


def mta_sts_id(hostname: str, mode: str = "testing") -> str:
    """The policy's ``id`` (RFC 8461 §3.1: changes when the policy does): a
    digest of the policy text, so the same policy always has the same id."""
    return hashlib.sha256(mta_sts_policy(hostname, mode).encode()).hexdigest()[:20]

#: RFC 6186 service names and the listener that offers each.
_SERVICES = (
    ("_submission._tcp", "submission", "starttls"),
    ("_submissions._tcp", "submission", "implicit"),
    ("_imap._tcp", "imap", "starttls"),
    ("_imaps._tcp", "imap", "implicit"),
)


def dkim_record(domain: str, selector: str, txt: str) -> DnsRecord:
    """The TXT record of one DKIM key at ``selector._domainkey.domain``."""
    return DnsRecord(DKIM, f"{selector}._domainkey.{domain}", "TXT", txt)


def _service_port(listeners: Iterable[Listener], protocol: str, tls: str) -> int | None:
    for lst in listeners:
        if lst.protocol == protocol and lst.tls == tls and lst.port:
            return lst.port
    return None


def domain_records(domain: str, hostname: str, listeners: Sequence[Listener],
                   dkim: Sequence[DnsRecord]) -> list[DnsRecord]:
    """MX (RFC 5321 §5.1) to ``hostname``; SPF (RFC 7208) allowing the MX
    hosts; the ``dkim`` key records (RFC 6376 §3.6.2); DMARC (RFC 7489 §6.1);
    RFC 6186 SRV records for mail client set-up, with RFC 8314 §5.1
    ``_submissions``; a service we do not offer gets target "." (RFC 6186 §4);
    MTA-STS (RFC 8461 §3.1) and TLS-RPT (RFC 8460 §3) TXT records; CNAMEs of
    ``mta-sts``, ``autoconfig`` and ``autodiscover`` to ``hostname``.

    ``domain`` and ``hostname`` are fully qualified, without the final dot.
    """
    records = [
        DnsRecord(MX, domain, "MX", f"10 {hostname}."),
        DnsRecord(SPF, domain, "TXT", "v=spf1 mx -all"),
        *dkim,
        DnsRecord(DMARC, f"_dmarc.{domain}", "TXT",
                  f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"),
    ]
    for service, protocol, tls in _SERVICES:
        port = _service_port(listeners, protocol, tls)
        target = f"0 1 {port} {hostname}." if port else "0 0 0 ."
        records.append(DnsRecord(SRV, f"{service}.{domain}", "SRV", target))
    records += [
        DnsRecord(MTA_STS, f"_mta-sts.{domain}", "TXT",
                  f"v=STSv1; id={mta_sts_id(hostname)}"),
        DnsRecord(TLSRPT, f"_smtp._tls.{domain}", "TXT",
                  f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"),
    ]
    for name in ("mta-sts", "autoconfig", "autodiscover"):
        records.append(DnsRecord(CLIENTS, f"{name}.{domain}", "CNAME", f"{hostname}."))
    return records
