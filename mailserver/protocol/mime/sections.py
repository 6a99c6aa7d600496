"""BODY[section] octets (RFC 3501 §6.4.5) from a stored message and its facts.

The stored message is ``prefix + blob``; the facts' offsets are into the blob,
so every offset shifts by ``prefix_len``, and the top-level header (which the
prefix's trace fields are part of) starts at 0.

Part numbers (RFC 3501 §6.4.5): the body parts of a multipart are numbered
from 1; a non-multipart message (and the message inside a message/rfc822 part
that is not multipart) has only part 1, its body.  HEADER, HEADER.FIELDS,
HEADER.FIELDS.NOT and TEXT after a part number need a message/rfc822 part
and address its encapsulated message; MIME addresses a part's own header.

Parts that BODYSTRUCTURE reports but the blob does not hold (see
``bodystructure``): the one empty text/plain body part of a multipart without
body parts, and the empty message inside a message/rfc822 part we did not
parse into (an encoded one, or past the limits).  They exist, so they answer
the empty string, not NIL (RFC 3501 §6.4.5: a section of an existing part is
its octets; §7.4.2 lists them in the BODYSTRUCTURE); NIL stays for part
numbers that name nothing.
"""

from __future__ import annotations

from mailserver.protocol.imap.types import Section

from .facts import MessageFacts, Part
from .headers import parse_fields
from .structure import LEAF, MESSAGE, MULTIPART


def _empty(pos: int) -> Part:
    """A zero-length text/plain part at ``pos`` (the synthetic parts above)."""
    return Part(pos, pos, pos, LEAF, "text/plain", "", "us-ascii")


def _child(part: Part, n: int) -> Part | None:
    if not part.children:
        # BODYSTRUCTURE gives a multipart without body parts one empty part.
        return _empty(part.end) if n == 1 else None
    return part.children[n - 1] if 1 <= n <= len(part.children) else None


def _enter(msg: Part, n: int) -> Part | None:
    """Part ``n`` of a message: a body part of a multipart, or the message itself
    as its only part 1."""
    if msg.kind == MULTIPART:
        return _child(msg, n)
    return msg if n == 1 else None


def _encapsulated(part: Part) -> Part | None:
    """The message inside a message/rfc822 part: parsed, or (when we did not
    parse into it) the empty message BODYSTRUCTURE reports; None for other parts."""
    if part.kind == MESSAGE:
        return part.children[0]
    if part.kind == LEAF and part.media_type == "message/rfc822":
        return _empty(part.end)
    return None


def resolve(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part a non-empty part number path names, or None if there is none."""
    cur: Part | None = _enter(root, path[0])
    for n in path[1:]:
        if cur is None:
            return None
        if cur.kind == MULTIPART:
            cur = _child(cur, n)
            continue
        inner = _encapsulated(cur)
        if inner is None:
            return None
        cur = _enter(inner, n)
    return cur


def header_fields(block: bytes, names: tuple[str, ...], negate: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the matching field lines of ``block`` as
    stored, in message order, then a CRLF blank line (RFC 3501 §6.4.5).
    ``names`` are compared case-insensitively."""
    want = {n.upper() for n in names}
    out: list[bytes] = []
    for f in parse_fields(block):
        if (f.name.decode("latin-1").upper() in want) != negate:
            line = block[f.start : f.end]
            out.append(line if line.endswith(b"\n") else line + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def section_bytes(
    message: bytes, facts: MessageFacts, section: Section, prefix_len: int = 0
) -> bytes | None:
    """The octets of ``BODY[section]`` (RFC 3501 §6.4.5), raw as stored.

    ``message`` is ``prefix + blob`` with ``len(prefix) == prefix_len``; ``facts``
    are the blob's.  Returns None when the section names a part that does not
    exist (or HEADER/TEXT of a part that is not message/rfc822, or MIME of the
    whole message).  Never raises for a valid ``Section``.
    """
    off = prefix_len
    root = facts.root
    text = section.text
    if not section.part:
        msg, header_start = root, 0
        if text is None:
            return message
        if text == "MIME":
            return None
    else:
        part = resolve(root, section.part)
        if part is None:
            return None
        if text is None:
            return message[off + part.body_start : off + part.end]
        if text == "MIME":
            start = 0 if part is root else off + part.header_start
            return message[start : off + part.body_start]
        inner = _encapsulated(part)
        if inner is None:
            return None
        msg = inner
        header_start = off + msg.header_start
    if text == "TEXT":
        return message[off + msg.body_start : off + msg.end]
    header = message[header_start : off + msg.body_start]
    if text == "HEADER":
        return header
    if text == "HEADER.FIELDS":
        return header_fields(header, section.fields, negate=False)
    if text == "HEADER.FIELDS.NOT":
        return header_fields(header, section.fields, negate=True)
    return None
