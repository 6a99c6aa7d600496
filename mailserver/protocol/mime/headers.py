"""Header blocks: find their end, split them into fields, unfold and decode values.

Everything works on the bytes as stored.  A line ends at LF (an optional CR
before it is part of the line end); a bare CR is an ordinary byte, as in
Dovecot, because RFC 5322 §2.1 only knows CRLF and real mail also uses LF.

Field syntax is RFC 5322 §2.2 with the obsolete forms of §4.5 accepted
(whitespace before the colon).  A line that is neither a field nor a
continuation (no colon, a name with a space, an mbox ``From `` line) is kept
in the block but belongs to no field.
"""

from __future__ import annotations

import binascii
import codecs
import re
from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"


class Field(NamedTuple):
    """One header field: ``name`` as written (without trailing WSP), ``value`` the
    raw bytes after the colon up to the last line break (still folded), and
    ``start``/``end`` the offsets of its lines in the block, ``end`` after the
    final line break."""

    name: bytes
    value: bytes
    start: int
    end: int


def blank_line_at(data: bytes, pos: int) -> int:
    """If a blank line (LF or CRLF) starts at ``pos``, the offset after it, else -1."""
    c = data[pos : pos + 1]
    if c == b"\n":
        return pos + 1
    if c == b"\r" and data[pos + 1 : pos + 2] == b"\n":
        return pos + 2
    return -1


def find_header_end(data: bytes, start: int, limit: int) -> tuple[int, int]:
    """Where the header block starting at ``start`` ends, searching below ``limit``.

    ``header_end == body_start == start`` when the first line is not a field.

    Returns ``(header_end, body_start)``: the header is ``data[start:header_end]``
    including the final line break of its last field; the blank line is
    ``data[header_end:body_start]`` (RFC 5322 §2.1).  With no blank line the whole
    range is header and the body is empty (``header_end == body_start == limit``),
    which is what Dovecot does.
    """
    after = blank_line_at(data, start)
    if after != -1 and after <= limit:
        return start, after
    # A first line that cannot be a field means there is no header at all
    # (a part that starts right with text).  Later non-field lines stay in the
    # header, as Dovecot does, so a stray line does not hide the fields after it.
    eol = data.find(b"\n", start, limit)
    first = data[start : limit if eol == -1 else eol]
    if (
        first[:1] not in (b" ", b"\t")
        and b":" not in first
        and not (start == 0 and first.startswith(b"From "))
    ):
        return start, start
    # Search for each form only up to the best end found so far: an unbounded
    # second search would rescan the rest of a large message for every part.
    best = limit
    for pat in (b"\n\r\n", b"\n\n"):
        i = data.find(pat, start, min(limit, best + len(pat)))
        if i != -1 and i + 1 < best:
            best = i + 1
    if best == limit:
        return limit, limit
    return best, blank_line_at(data, best)


def parse_fields(block: bytes) -> list[Field]:
    """Split a header block into fields (RFC 5322 §2.2, §2.2.3 folding).

    A leading UTF-8 BOM is skipped for the first name only (the bytes stay in
    the block).  Never raises.
    """
    fields: list[Field] = []
    n = len(block)
    pos = 0
    name: bytes | None = None
    vstart = fstart = fend = 0
    while pos < n:
        i = block.find(b"\n", pos)
        end = n if i == -1 else i + 1
        first = block[pos : pos + 1]
        if first in (b" ", b"\t"):
            if name is not None:
                fend = end
            pos = end
            continue
        if name is not None:
            fields.append(Field(name, _strip_eol(block[vstart:fend]), fstart, fend))
            name = None
        colon = block.find(b":", pos, end)
        if colon != -1:
            cand = block[pos:colon].rstrip(b" \t")
            if pos == 0 and cand.startswith(_BOM):
                cand = cand[len(_BOM) :]
            if cand and not _BAD_NAME.search(cand):
                name, vstart, fstart, fend = cand, colon + 1, pos, end
        pos = end
    if name is not None:
        fields.append(Field(name, _strip_eol(block[vstart:fend]), fstart, fend))
    return fields


_BAD_NAME = re.compile(rb"[\x00-\x20\x7f]")


def _strip_eol(value: bytes) -> bytes:
    if value.endswith(b"\n"):
        value = value[:-1]
        if value.endswith(b"\r"):
            value = value[:-1]
    return value


def unfold(value: bytes) -> bytes:
    """RFC 5322 §2.2.3 unfolding: drop each line break (every one inside a field
    value is followed by WSP, so no check is needed)."""
    if b"\n" not in value:
        return value
    return value.replace(b"\r\n", b"").replace(b"\n", b"")


def first_value(fields: list[Field], name: bytes) -> bytes | None:
    """The raw value of the first field called ``name`` (lower-case), or None."""
    for f in fields:
        if f.name.lower() == name:
            return f.value
    return None


# ------------------------------------------------------------------ decoding


def bytes_to_text(raw: bytes) -> str:
    """Header or body bytes to text: UTF-8 (RFC 6532) when valid, else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_EW = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_QP_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def _ew_bytes(kind: str, text: str) -> bytes | None:
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return None
    if kind in "bB":
        raw = raw.rstrip(b"=")
        raw += b"=" * (-len(raw) % 4)
        try:
            return binascii.a2b_base64(raw)
        except (binascii.Error, ValueError):
            return None
    raw = raw.replace(b"_", b" ")
    return _QP_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw)


def _decode_charset(raw: bytes, charset: str) -> str:
    # RFC 2231 §5: "charset*language" in an encoded-word.
    charset = charset.split("*", 1)[0].strip().lower()
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):
        return raw.decode("utf-8", "replace")
    try:
        return raw.decode(charset, "replace")
    except Exception:  # a codec may fail in odd ways on junk; never let it escape
        return raw.decode("utf-8", "replace")


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded-words in ``text``.

    Whitespace between adjacent encoded-words is dropped (RFC 2047 §6.2), and
    adjacent words in the same charset are joined before decoding so that a
    character split over two words survives.  Malformed words are left as they
    are.  Never raises.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    pending: list[bytes] = []
    pending_cs = ""
    pos = 0

    def flush() -> None:
        nonlocal pending, pending_cs
        if pending:
            out.append(_decode_charset(b"".join(pending), pending_cs))
            pending = []
            pending_cs = ""

    for m in _EW.finditer(text):
        between = text[pos : m.start()]
        raw = _ew_bytes(m.group(2), m.group(3))
        if raw is None:
            continue
        if between and (not pending or between.strip(" \t\r\n")):
            flush()
            out.append(between)
        cs = m.group(1)
        if pending and cs.lower() != pending_cs.lower():
            flush()
        pending.append(raw)
        pending_cs = pending_cs or cs
        pos = m.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


def header_values(header_block: bytes, name: str) -> list[str]:
    """Decoded, unfolded values of every field ``name`` (case-insensitive) in
    ``header_block``, in order, with surrounding whitespace removed.

    Used by SEARCH FROM/TO/CC/BCC/SUBJECT/HEADER (RFC 3501 §6.4.4).  Raw 8-bit
    bytes are read as UTF-8 (RFC 6532) or else Latin-1; RFC 2047 encoded-words
    are decoded.  Never raises.
    """
    try:
        want = name.strip().lower().encode("ascii", "replace")
        return [
            decode_words(bytes_to_text(unfold(f.value))).strip(" \t\r\n")
            for f in parse_fields(header_block)
            if f.name.lower() == want
        ]
    except Exception:  # documented as never raising; a bug here must not kill SEARCH
        return []
