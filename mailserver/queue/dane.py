"""DANE for SMTP (RFC 7672): which TLSA records count and whether a certificate matches.

Sans-IO: fed TLSA records (RFC 6698 §2) and DER certificates, returns
verdicts.  The TLSA RRset is looked up at ``_25._tcp.<mx host>`` and counts
only when the validating resolver answered with the AD bit (RFC 7672 §2.1):
that lookup (``DnsPythonResolver.tlsa``) is the caller's.

* Only DANE-TA(2) and DANE-EE(3) records are usable (§3.1.3); PKIX-TA(0)
  and PKIX-EE(1) are ignored, as are unknown selectors and matching types.
  A secure RRset with records but none usable means plain opportunistic TLS
  (§3.1.3); one with a usable record makes TLS mandatory for that host
  (§2.2: no STARTTLS or no match: the host is skipped, TLS-RPT
  ``dane-required`` / ``tlsa-invalid``).
* DANE-EE(3) (§3.1.1): the server's own certificate (selector 0) or public
  key (selector 1) matches; names and expiry are not checked.
* DANE-TA(2) (§3.1.2): a certificate of the presented chain matches and the
  chain from the leaf up to it is signed link by link; the leaf must then
  carry the MX host name (or the TLSA base domain) in its SAN (§3.2.2,
  §3.2.3; a wildcard stands for one left-most label).
* With DANE, MTA-STS does not apply to that host (RFC 8461 §2).

Matching types (RFC 6698 §2.1.3): 0 exact, 1 SHA-256, 2 SHA-512.

Status: wired into delivery (``client.py``, ``outbound.dane``) and tested end
to end, through Debian's unbound validating a zone signed on the fly
(``tests/support/unbound.py``; skipped where unbound is not installed) and
through our loopback DNS server setting the AD bit.  Python 3.11's ``ssl``
hands over the leaf certificate only, so in delivery DANE-TA(2) matches only
a leaf that is its own trust anchor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DANE_TA = 2
DANE_EE = 3


@dataclass(frozen=True, slots=True)
class Tlsa:
    """One TLSA record (RFC 6698 §2.1): ``usage``, ``selector``, ``mtype``, ``data``."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    @classmethod
    def from_text(cls, text: str) -> Tlsa:
        """``"3 1 1 ab12..."`` (presentation format, RFC 6698 §2.2).  Raises ValueError."""
        parts = text.split()
        if len(parts) < 4:
            raise ValueError(f"not a TLSA record: {text[:60]!r}")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]), bytes.fromhex("".join(parts[3:])))


def usable(records: Sequence[Tlsa]) -> list[Tlsa]:
    """The records an SMTP client may use (RFC 7672 §3.1.3)."""
    return [r for r in records
            if r.usage in (DANE_TA, DANE_EE) and r.selector in (0, 1) and r.mtype in (0, 1, 2)]


def _selected(cert: x509.Certificate, selector: int) -> bytes:
    if selector == 0:
        return cert.public_bytes(Encoding.DER)
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def matches(record: Tlsa, cert: x509.Certificate) -> bool:
    """Whether ``cert`` is what ``record`` names (selector and matching type)."""
    data = _selected(cert, record.selector)
    if record.mtype == 1:
        data = hashlib.sha256(data).digest()
    elif record.mtype == 2:
        data = hashlib.sha512(data).digest()
    return data == record.data


def _name_ok(cert: x509.Certificate, names: Sequence[str]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    dns_names = [n.lower().rstrip(".") for n in san.value.get_values_for_type(x509.DNSName)]
    for want in (n.lower().rstrip(".") for n in names):
        for have in dns_names:
            if have == want:
                return True
            if have.startswith("*.") and "." in want and want.split(".", 1)[1] == have[2:]:
                return True
    return False


def verify(records: Sequence[Tlsa], chain_der: Sequence[bytes], names: Sequence[str]) -> bool:
    """Whether the chain the server presented (leaf first, DER) satisfies one of
    the usable ``records`` (RFC 7672 §3.1).  ``names``: the MX host name and the
    TLSA base domain, for DANE-TA's name check (§3.2.2).  Never raises for a bad
    certificate: it does not match."""
    try:
        chain = [x509.load_der_x509_certificate(d) for d in chain_der]
    except ValueError:
        return False
    if not chain:
        return False
    leaf = chain[0]
    for r in usable(records):
        if r.usage == DANE_EE and matches(r, leaf):
            return True
    for r in usable(records):
        if r.usage != DANE_TA:
            continue
        for i, cert in enumerate(chain):
            if matches(r, cert) and _signed_up_to(chain, i) and _name_ok(leaf, names):
                return True
    return False


def _signed_up_to(chain: Sequence[x509.Certificate], top: int) -> bool:
    """Each certificate from the leaf to ``chain[top]`` is issued by the next."""
    for i in range(top):
        try:
            chain[i].verify_directly_issued_by(chain[i + 1])
        except (ValueError, TypeError, InvalidSignature):
            return False
    return True
