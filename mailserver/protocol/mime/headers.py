"""Header blocks: find their end, split them into fields, unfold and decode values.

Everything works on the bytes as stored.  A line ends at LF (an optional CR
before it is part of the line end); a bare CR is an ordinary byte, as in
Dovecot, because RFC 5322 §2.1 only knows CRLF and real mail also uses LF.

Field syntax is RFC 5322 §2.2 with the obsolete forms of §4.5 accepted
(whitespace before the colon).  A line that is neither a field nor a
continuation (no colon, a name with a space, an mbox ``From `` line) is kept
in the block but belongs to no field.

A block is split once (``HeaderFields.parse``) and every consumer (ENVELOPE,
BODYSTRUCTURE, the SEARCH values, the sent date) asks that object, indexed by
lower-case field name, rather than splitting the block again per field.
"""

from __future__ import annotations

import binascii
import codecs
import re
from dataclasses import dataclass
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
    # Looked at in place: a copy of the line would copy a whole message without LF.
    eol = data.find(b"\n", start, limit)
    line_end = limit if eol == -1 else eol
    if (
        data[start : start + 1] not in (b" ", b"\t")
        and data.find(b":", start, line_end) == -1
        and not (start == 0 and data.startswith(b"From ", 0, line_end))
    ):
        return start, start
    best = _first_blank_line(data, start, limit)
    if best == -1:
        return limit, limit
    return best, blank_line_at(data, best)


#: First window ``_first_blank_line`` searches; it doubles after each miss.
_WINDOW = 4096


def _first_blank_line(data: bytes, start: int, limit: int) -> int:
    """The offset of the first blank line (LF or CRLF) that follows a line break
    in ``data[start:limit]``, or -1.

    Searched in doubling windows so that the cost is that of the distance to
    the blank line, not to ``limit``: an LF-only message has no ``\\n\\r\\n``
    at all, and a search for it up to ``limit`` would scan the rest of the
    message once for every part.
    """
    lo, size = start, _WINDOW
    while lo < limit:
        hi = min(limit, lo + size)
        # occurrences starting in [lo, hi), wholly below limit; the second form
        # is only looked for before the first one found
        i = data.find(b"\n\r\n", lo, min(limit, hi + 2))
        j = data.find(b"\n\n", lo, min(limit, hi + 1, limit if i == -1 else i + 2))
        if j != -1:
            return j + 1
        if i != -1:
            return i + 1
        lo, size = hi, size * 2
    return -1


def parse_fields(block: bytes, start: int = 0, end: int | None = None) -> list[Field]:
    """Split a header block into fields (RFC 5322 §2.2, §2.2.3 folding).

    The block is ``block[start:end]`` (given as a range so that a header as large
    as the message is not copied); field offsets are relative to ``start``.  A
    leading UTF-8 BOM is skipped for the first name only (the bytes stay in the
    block).  Never raises.
    """
    fields: list[Field] = []
    n = len(block) if end is None else min(end, len(block))
    pos = start
    name: bytes | None = None
    vstart = fstart = fend = 0
    find = block.find
    while pos < n:
        i = find(b"\n", pos, n)
        line_end = n if i == -1 else i + 1
        c = block[pos]
        if c == 0x20 or c == 0x09:  # continuation line: SP or HTAB
            if name is not None:
                fend = line_end
            pos = line_end
            continue
        if name is not None:
            fields.append(_field(block, name, vstart, fstart, fend, start))
            name = None
        colon = find(b":", pos, line_end)
        if colon != -1:
            cand = block[pos:colon].rstrip(b" \t")
            if pos == start and cand.startswith(_BOM):
                cand = cand[len(_BOM) :]
            if cand and not _BAD_NAME.search(cand):
                name, vstart, fstart, fend = cand, colon + 1, pos, line_end
        pos = line_end
    if name is not None:
        fields.append(_field(block, name, vstart, fstart, fend, start))
    return fields


def _field(block: bytes, name: bytes, vstart: int, fstart: int, fend: int, base: int) -> Field:
    """The field at ``block[fstart:fend]``, its value without the final line break
    (cut before slicing, so the value is copied once)."""
    vend = fend
    if vend > vstart and block[vend - 1] == 0x0A:
        vend -= 1
        if vend > vstart and block[vend - 1] == 0x0D:
            vend -= 1
    return Field(name, block[vstart:vend], fstart - base, fend - base)


_BAD_NAME = re.compile(rb"[\x00-\x20\x7f]")


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


@dataclass(frozen=True, slots=True)
class HeaderFields:
    """A header block split once: ``fields`` in block order, and ``by_name`` the
    same fields grouped by lower-case name (each group in block order)."""

    fields: list[Field]
    by_name: dict[bytes, list[Field]]

    @classmethod
    def parse(cls, block: bytes, start: int = 0, end: int | None = None) -> HeaderFields:
        """Split ``block[start:end]`` (see ``parse_fields``).  Never raises."""
        fields = parse_fields(block, start, end)
        by_name: dict[bytes, list[Field]] = {}
        for f in fields:
            key = f.name.lower()
            group = by_name.get(key)
            if group is None:
                by_name[key] = [f]
            else:
                group.append(f)
        return cls(fields, by_name)

    def first(self, name: bytes) -> bytes | None:
        """The raw value of the first field called ``name`` (lower-case), or None
        (the first occurrence wins, as Dovecot does where RFC 3501 is silent)."""
        group = self.by_name.get(name)
        return None if group is None else group[0].value

    def text(self, name: bytes) -> str | None:
        """The first value of ``name`` (lower-case), unfolded, as Latin-1 text
        (every byte kept, for the MIME parameter parsers and IMAP strings)."""
        group = self.by_name.get(name)
        return None if group is None else unfold(group[0].value).decode("latin-1")

    def values(self, name: bytes) -> list[str]:
        """Decoded values of every field ``name`` (lower-case): see ``header_values``."""
        group = self.by_name.get(name)
        return [] if group is None else [decode_value(f.value) for f in group]


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


def decode_value(raw: bytes) -> str:
    """A raw field value as SEARCH compares it: unfolded, 8-bit bytes read as
    UTF-8 (RFC 6532) or else Latin-1, RFC 2047 encoded-words decoded, and
    surrounding whitespace removed.  Never raises."""
    return decode_words(bytes_to_text(unfold(raw))).strip(" \t\r\n")


def header_values(header_block: bytes, name: str) -> list[str]:
    """Decoded, unfolded values of every field ``name`` (case-insensitive) in
    ``header_block``, in order, with surrounding whitespace removed.

    Used by SEARCH FROM/TO/CC/BCC/SUBJECT/HEADER (RFC 3501 §6.4.4).  Raw 8-bit
    bytes are read as UTF-8 (RFC 6532) or else Latin-1; RFC 2047 encoded-words
    are decoded.  Never raises.
    """
    try:
        want = name.strip().lower().encode("ascii", "replace")
        return [decode_value(f.value) for f in parse_fields(header_block) if f.name.lower() == want]
    except Exception:  # documented as never raising; a bug here must not kill SEARCH
        return []
