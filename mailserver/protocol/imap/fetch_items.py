"""FETCH attributes (RFC 3501 §6.4.5, §9; RFC 3516 BINARY; RFC 7162 CONDSTORE).

::

    fetch       = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" /
                  fetch-att / "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]
    fetch-att   = "ENVELOPE" / "FLAGS" / "INTERNALDATE" /
                  "RFC822" [".HEADER" / ".SIZE" / ".TEXT"] /
                  "BODY" ["STRUCTURE"] / "UID" /
                  "BODY" section ["<" number "." nz-number ">"] /
                  "BODY.PEEK" section ["<" number "." nz-number ">"] /
                  "BINARY" [".PEEK"] section-binary [partial] /     ; RFC 3516
                  "BINARY.SIZE" section-binary /                     ; RFC 3516
                  "MODSEQ"                                           ; RFC 7162
    section     = "[" [section-spec] "]"
    section-spec = section-msgtext / (section-part ["." section-text])
    section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
    section-part = nz-number *("." nz-number)
    section-text = section-msgtext / "MIME"
    header-list = "(" header-fld-name *(SP header-fld-name) ")"
    header-fld-name = astring
    section-binary = "[" [section-part] "]"
    fetch-modifiers = SP "(" fetch-modifier *(SP fetch-modifier) ")"   ; RFC 4466
    fetch-modifier = "CHANGEDSINCE" SP mod-sequence-value / "VANISHED" ; RFC 7162

The macros expand as §6.4.5 says: FAST = (FLAGS INTERNALDATE RFC822.SIZE),
ALL = FAST + ENVELOPE, FULL = ALL + BODY.
"""

from __future__ import annotations

from mailserver.protocol.imap.tokens import ASTRING_CHARS, MAX_NUMBER64, Cursor
from mailserver.protocol.imap.types import FetchAtt, Section

_FAST = (FetchAtt("FLAGS"), FetchAtt("INTERNALDATE"), FetchAtt("RFC822.SIZE"))
_ALL = (*_FAST, FetchAtt("ENVELOPE"))
MACROS: dict[str, tuple[FetchAtt, ...]] = {
    "FAST": _FAST,
    "ALL": _ALL,
    "FULL": (*_ALL, FetchAtt("BODY")),
}

# Attributes that take no section.
_SIMPLE = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
    }
)
# The characters of a fetch-att name ("BODY.PEEK", "RFC822.SIZE"): stops at "[" "(" ")" SP.
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
# header-fld-name as an atom: ASTRING-CHAR minus ")" is implied (")" is not an ASTRING-CHAR).
_FIELD_CHARS = ASTRING_CHARS


def _section_part(cur: Cursor) -> tuple[int, ...]:
    """section-part = nz-number *("." nz-number); stops before ".TEXT" etc."""
    part = [cur.nz_number(what="part number")]
    while cur.peek() == 0x2E:
        save = cur.pos
        cur.pos += 1
        c = cur.peek()
        if c is not None and 0x30 <= c <= 0x39:
            part.append(cur.nz_number(what="part number"))
        else:
            cur.pos = save
            break
    return tuple(part)


def _header_list(cur: Cursor) -> tuple[str, ...]:
    """header-list = "(" header-fld-name *(SP header-fld-name) ")"  (upper-cased)"""
    cur.sp()
    cur.open_paren()
    names: list[str] = []
    while True:
        name = cur.astr()
        # field-name = 1*<printable US-ASCII except ":"> (RFC 5322 §3.6.8)
        if not name or any(not ("!" <= ch <= "~") or ch == ":" for ch in name):
            raise cur.error("Invalid header field name")
        names.append(name.upper())
        if cur.close_paren():
            return tuple(names)
        cur.sp()


def _section_text(cur: Cursor, *, mime_ok: bool) -> tuple[str, tuple[str, ...]]:
    word = cur.word(_NAME_CHARS, "section").decode("ascii").upper()
    if word == "HEADER" or word == "TEXT" or (word == "MIME" and mime_ok):
        return word, ()
    if word in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return word, _header_list(cur)
    raise cur.error("Invalid section")


def _section(cur: Cursor) -> Section:
    """section = "[" [section-spec] "]"  (the "[" is already consumed)"""
    if cur.take(b"]"):
        return Section()
    c = cur.peek()
    if c is not None and 0x30 <= c <= 0x39:
        part = _section_part(cur)
        text: str | None = None
        fields: tuple[str, ...] = ()
        if cur.take(b"."):
            text, fields = _section_text(cur, mime_ok=True)
        cur.expect(b"]", '"]"')
        return Section(part, text, fields)
    text, fields = _section_text(cur, mime_ok=False)
    cur.expect(b"]", '"]"')
    return Section((), text, fields)


def _binary_section(cur: Cursor) -> Section:
    """section-binary = "[" [section-part] "]"  (the "[" is already consumed)"""
    if cur.take(b"]"):
        return Section()
    part = _section_part(cur)
    cur.expect(b"]", '"]"')
    return Section(part)


def _partial(cur: Cursor) -> tuple[int, int] | None:
    """["<" number "." nz-number ">"]: (offset, length) in octets."""
    if not cur.take(b"<"):
        return None
    offset = cur.number(what="offset")
    cur.expect(b".", '"."')
    length = cur.nz_number(what="length")
    cur.expect(b">", '">"')
    return offset, length


def fetch_att(cur: Cursor) -> FetchAtt:
    """One fetch-att (see the module grammar)."""
    name = cur.word(_NAME_CHARS, "fetch attribute").decode("ascii").upper()
    if cur.peek() != 0x5B:  # "["
        if name in _SIMPLE:
            return FetchAtt(name)
        raise cur.error(f"Unknown fetch attribute {name[:40]}")
    cur.pos += 1
    if name in ("BODY", "BODY.PEEK"):
        section = _section(cur)
        return FetchAtt("BODY", section, name == "BODY.PEEK", _partial(cur))
    if name in ("BINARY", "BINARY.PEEK"):
        section = _binary_section(cur)
        return FetchAtt("BINARY", section, name == "BINARY.PEEK", _partial(cur))
    if name == "BINARY.SIZE":
        return FetchAtt("BINARY.SIZE", _binary_section(cur))
    raise cur.error(f"Unknown fetch attribute {name[:40]}")


def fetch_atts(cur: Cursor) -> tuple[FetchAtt, ...]:
    """("ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")")"""
    if cur.take(b"("):
        atts = [fetch_att(cur)]
        while not cur.close_paren():
            cur.sp()
            atts.append(fetch_att(cur))
        return tuple(atts)
    save = cur.pos
    word = cur.word(_NAME_CHARS, "fetch attribute").decode("ascii").upper()
    if word in MACROS and cur.peek() != 0x5B:
        return MACROS[word]
    cur.pos = save
    return (fetch_att(cur),)


def fetch_modifiers(cur: Cursor) -> tuple[int | None, bool]:
    """[fetch-modifiers] -> (CHANGEDSINCE value or None, VANISHED given)."""
    changedsince: int | None = None
    vanished = False
    if not cur.take_sp():
        return changedsince, vanished
    cur.open_paren()
    while True:
        name = cur.keyword()
        if name == "CHANGEDSINCE" and changedsince is None:
            cur.sp()
            # mod-sequence-value = 1*DIGIT, 1..2^63-1 (RFC 7162 §7)
            changedsince = cur.nz_number(MAX_NUMBER64, "mod-sequence")
        elif name == "VANISHED" and not vanished:
            vanished = True
        else:
            raise cur.error(f"Unknown FETCH modifier {name[:40]}")
        if cur.close_paren():
            return changedsince, vanished
        cur.sp()
