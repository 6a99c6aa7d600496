"""Decoded text of a message for SEARCH BODY / TEXT (RFC 3501 §6.4.4).

BODY matches "in the body of the message": what the user reads, i.e. the
decoded content of each leaf part, never MIME part headers, boundary lines,
preambles or epilogues (those are structure, and "boundary" or
"Content-Type" would otherwise match nearly every multipart message).  Only
text/* and message/* leaves are searched (message/partial,
message/external-body, message/delivery-status and an encapsulated message we
did not parse into, as Dovecot does): decoding a PDF or an image as text finds
nothing but noise.  TEXT ("in the header or body") also searches the headers
of encapsulated messages (``with_headers``), which are part of the outer
message's body.  Transfer encodings (RFC 2045 §6.7, §6.8) and charsets are
undone with errors replaced.
"""

from __future__ import annotations

import binascii
import codecs
import re

from .facts import MessageFacts, Part
from .headers import bytes_to_text, decode_words, unfold
from .structure import MESSAGE, MULTIPART

_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/]")


def decode_transfer(data: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding leniently (junk skipped); unknown ones
    are returned as they are."""
    try:
        if encoding == "base64":
            clean = _NOT_B64.sub(b"", data)
            clean = clean[: len(clean) - len(clean) % 4]
            return binascii.a2b_base64(clean)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(data)
    except (binascii.Error, ValueError):
        return data
    return data


def decode_charset(data: bytes, charset: str) -> str:
    """Bytes in ``charset`` to text, errors replaced; unknown charsets as UTF-8
    (RFC 6532) or Latin-1."""
    if charset:
        try:
            codecs.lookup(charset)
            return data.decode(charset, "replace")
        except Exception:  # unknown charset, or a codec that fails on junk
            pass
    return bytes_to_text(data)


def _walk(message: bytes, off: int, part: Part, headers: bool, out: list[str]) -> None:
    if part.kind == MULTIPART:
        for c in part.children:
            _walk(message, off, c, headers, out)
        return
    if part.kind == MESSAGE:
        inner = part.children[0]
        if headers:
            header = message[off + inner.header_start : off + inner.body_start]
            out.append(decode_words(bytes_to_text(unfold(header))))
        _walk(message, off, inner, headers, out)
        return
    if part.media_type.startswith(("text/", "message/")):
        raw = message[off + part.body_start : off + part.end]
        out.append(decode_charset(decode_transfer(raw, part.encoding), part.charset))


def search_text(message: bytes, facts: MessageFacts, *, with_headers: bool = False) -> str:
    """The decoded text of the message body's text and message leaf parts
    (``message`` is ``prefix + blob``; the prefix is header, so it is not
    included).  ``with_headers`` adds the headers of encapsulated messages
    (SEARCH TEXT); without it this is what SEARCH BODY looks at.

    Never raises: on any internal failure the raw body as text is returned.
    """
    off = max(len(message) - facts.size, 0)
    try:
        out: list[str] = []
        _walk(message, off, facts.root, with_headers, out)
        return "\n".join(out)
    except Exception:  # searching must not fail because of one odd message
        return bytes_to_text(message[off + facts.root.body_start :])
