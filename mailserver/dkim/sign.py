"""Signing with dkimpy (with ``verify.py``, the only importers of ``dkim``).

RFC 6376 §3.4 relaxed/relaxed canonicalization survives the header
re-folding and whitespace changes relays commonly make.  The header list is
the RFC 6376 §5.4.1 recommendation, limited to the headers present (signing
an absent header would fail verification if a relay added it, e.g.
Reply-To — a deliberate trade-off).

Each present header is oversigned (RFC 6376 §5.4.2, §8.15): ``h=`` names it
one more time than it occurs, and the extra name signs the "null" instance,
so a second ``From:`` (or ``Subject:``...) added after signing — the classic
trick to show readers another author under our valid signature — breaks the
signature.  The fields listed are all ones RFC 5322 §3.6 (and RFC 2045 for the
MIME fields) allows at most once, so no honest relay adds another.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import re
from collections.abc import Sequence

import dkim
from cryptography.hazmat.primitives import serialization

from mailserver.dkim.keys import DkimKey
from mailserver.errors import MailserverError

SIGNED_HEADERS = (
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding", "Reply-To", "In-Reply-To", "References",
    # RFC 8460 §5.3: a TLS report's own fields SHOULD be signed.
    "TLS-Report-Domain", "TLS-Report-Submitter",
)


def _present_headers(message: bytes) -> list[bytes]:
    """The ``h=`` list: each of SIGNED_HEADERS present, as many times as it occurs
    plus one (oversigning, see the module doc)."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    counts: dict[bytes, int] = {}
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") or b":" not in line:
            continue
        name = line.split(b":", 1)[0].strip().lower()
        counts[name] = counts.get(name, 0) + 1
    out: list[bytes] = []
    for h in SIGNED_HEADERS:
        n = counts.get(h.lower().encode(), 0)
        if n:
            out += [h.encode()] * (n + 1)
    return out


def _dkimpy_key(key: DkimKey) -> bytes:
    if key.algorithm == "rsa":
        return key.private_pem
    # dkimpy wants Ed25519 keys as base64 of the raw 32-byte seed (RFC 8463 §3).
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw)


def sign(message: bytes, domain: str, keys: Sequence[DkimKey]) -> bytes:
    """The ``DKIM-Signature:`` header field(s) to prepend to ``message`` (CRLF lines).

    One signature per key, in order (RSA-SHA256, Ed25519-SHA256 per RFC 8463).
    ``message`` must use CRLF line ends (as it was received over SMTP).
    Returns b"" without keys.  Raises MailserverError when dkimpy refuses
    (e.g. no From header: RFC 6376 §5.4 requires signing From).
    """
    out = []
    headers = _present_headers(message)
    if b"From" not in headers:
        raise MailserverError("cannot DKIM-sign a message without a From header")
    for key in keys:
        algo = b"rsa-sha256" if key.algorithm == "rsa" else b"ed25519-sha256"
        try:
            sig = dkim.sign(
                message,
                key.selector.encode(),
                domain.encode(),
                _dkimpy_key(key),
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=algo,
                include_headers=headers,
                linesep=b"\r\n",
            )
        except dkim.DKIMException as exc:
            raise MailserverError(f"DKIM signing failed: {exc}") from None
        out.append(sig)
    return b"".join(out)


async def sign_async(message: bytes, domain: str, keys: Sequence[DkimKey]) -> bytes:
    """``sign`` in a worker thread (RSA signing and body hashing are CPU work)."""
    if not keys:
        return b""
    return await asyncio.to_thread(sign, message, domain, keys)


_FROM = re.compile(rb"^From[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def from_domain(message: bytes) -> str | None:
    """The domain of the first ``From:`` address (the RFC 5322 author; the
    domain DMARC aligns DKIM with), lower-case, or None if there is none."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    m = _FROM.search(head)
    if m is None:
        return None
    value = re.sub(rb"\r?\n", b"", m.group(1)).decode("utf-8", "replace")
    _, addr = email.utils.parseaddr(value)
    domain = addr.rpartition("@")[2].strip().lower()
    return domain or None
