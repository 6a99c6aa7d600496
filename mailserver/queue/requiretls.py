"""REQUIRETLS (RFC 8689) in the outbound queue: what the message asks and the codes.

A message received with ``MAIL FROM:<...> REQUIRETLS`` (RFC 8689 §4.1) is
never sent in clear: every next hop must offer STARTTLS, present a
certificate that verifies, and advertise REQUIRETLS, and our MAIL carries
REQUIRETLS again (§4.2.2).  The certificate is checked by PKIX against the
MX host name (RFC 6125), with the system's trust store (or
``OutboundSettings.ca_file``): §4.2.2 also allows MTA-STS (RFC 8461) or
DANE (RFC 7672) instead; we do not let them stand in for PKIX here, so a
host that only DANE would authenticate fails here.  A host that does not qualify
counts as failed for this message; when none qualifies the message bounces
with ``5.7.30`` "REQUIRETLS support required" (§5, §7.2).

A message whose header carries ``TLS-Required: No`` (§4.2.1) asks the
opposite: deliver even where our TLS policy (``require_tls`` domains)
would refuse, so a failed handshake or a missing STARTTLS falls back to
clear text.  REQUIRETLS wins when both are given (§4.2.1).

The DSN for a REQUIRETLS message returns the header section only (§5: the
report may travel without TLS, so the content is not put at risk); it is
sent from the null reverse-path without REQUIRETLS (§5: a bounce is not
to be dropped for want of a REQUIRETLS next hop).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The bounce reply when no next hop could take a REQUIRETLS message (RFC 8689 §5, §7.2).
NOT_SUPPORTED = "550 5.7.30 REQUIRETLS support required"

_FIELD = re.compile(rb"(?im)^TLS-Required[ \t]*:((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)")


def header_section(message: bytes) -> bytes:
    """The message's header section (RFC 5322 §2.1): up to the first empty line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = message.find(sep)
        if end >= 0:
            return message[: end + len(sep) // 2]
    return message


def tls_required_no(message: bytes) -> bool:
    """Whether the header section has ``TLS-Required: No`` (RFC 8689 §4.2.1; the
    ABNF's "No" is case-insensitive, folding and white space ignored)."""
    m = _FIELD.search(header_section(message))
    if m is None:
        return False
    return b"".join(m.group(1).split()).lower() == b"no"


@dataclass(frozen=True, slots=True)
class TlsDemand:
    """What one message asks of TLS: ``requiretls`` (MAIL's REQUIRETLS, RFC 8689
    §4.1) or ``tls_optional`` (``TLS-Required: No``, §4.2.1); neither by default."""

    requiretls: bool = False
    tls_optional: bool = False


#: A message that asks nothing of TLS (the default).
NO_DEMAND = TlsDemand()
