"""The author addresses of a submitted message (pure: stdlib only).

RFC 6409 §6.1 lets an MSA check that the sender is who it says; we require
every mailbox of every ``From:`` field (RFC 5322 §3.6.2) to belong to the
authenticated user, as the MAIL FROM check does for the envelope.  Only the
header block is read; the bytes are never changed.
"""

from __future__ import annotations

import email.errors
import email.policy
import email.utils
import re

#: The end of the header block: the first empty line (CRLF, or a bare LF from
#: a sloppy client; both end the header section for any reader downstream).
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FROM_FIELD = re.compile(rb"^From[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def from_addresses(message: bytes) -> list[str]:
    """Every addr-spec in every ``From:`` field of ``message``, in order.

    Unfolds continuation lines (RFC 5322 §2.2.3); non-ASCII octets are read as
    UTF-8 (RFC 6532).  An entry is "" when a mailbox cannot be parsed (the
    caller must then refuse).  Returns [] when there is no From field.

    Two parsers read each field (``email.headerregistry`` and the older
    ``getaddresses``) and the addresses of both are returned, and a field with
    any syntax defect yields "": an ambiguous field such as
    ``a@ours.example <b@theirs.example>`` must not pass because one reader
    of it sees only the allowed address.
    """
    m = _HEADER_END.search(message)
    head = message[: m.start() + 1] if m else message
    out: list[str] = []
    for field in _FROM_FIELD.finditer(head):
        value = re.sub(rb"[\r\n]", b"", field.group(1)).decode("utf-8", "replace")
        try:
            parsed = email.policy.default.header_factory("From", value)
            modern = [a.addr_spec for a in parsed.addresses]
            defective = any(isinstance(d, email.errors.InvalidHeaderDefect)
                            for d in parsed.defects)
        except (ValueError, IndexError, TypeError):  # the parser's own failures
            modern, defective = [], True
        legacy = [addr for _, addr in email.utils.getaddresses([value])]
        if defective or not modern:
            out.append("")
        for addr in dict.fromkeys(modern + legacy):
            addr = addr.strip()
            local, at, domain = addr.rpartition("@")
            out.append(addr if at and local and domain else "")
    return out
