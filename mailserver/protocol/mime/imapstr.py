"""IMAP string output (RFC 3501 §4.3, §9 ``string`` / ``nstring``).

A value goes out as a quoted string when it can (7-bit, no CR/LF, short) and
as a literal otherwise.  NUL is not allowed even in a literal (``CHAR8`` is
%x01-ff), so NULs are replaced by 0x80 first, which is what Dovecot does.
"""

from __future__ import annotations

import re

#: Longer values are sent as literals: some clients choke on huge quoted strings.
MAX_QUOTED = 1024

_NEEDS_LITERAL = re.compile(rb"[\x00\r\n\x80-\xff]")
#: What a plain quoted string may not hold as is: literal-only bytes, and the
#: two that need a backslash.  One search finds the common case: none of them.
_NOT_PLAIN = re.compile(rb'[\x00\r\n\x80-\xff"\\]')


def nstring(value: bytes | str | None) -> bytes:
    """``nstring``: NIL for None, else :func:`string`."""
    if value is None:
        return b"NIL"
    return string(value)


def string(value: bytes | str) -> bytes:
    """``string``: quoted (``"`` and ``\\`` escaped) or ``{n}\\r\\n`` literal.

    A ``str`` is taken to hold Latin-1 code points, i.e. raw header bytes.
    """
    if isinstance(value, str):
        common = _COMMON.get(value)
        if common is not None:
            return common
        raw = value.encode("latin-1", "replace")
    else:
        raw = value
    if len(raw) > MAX_QUOTED:
        return _literal(raw)
    if _NOT_PLAIN.search(raw) is None:
        return b'"%s"' % raw
    if _NEEDS_LITERAL.search(raw):
        return _literal(raw)
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


#: Media types, subtypes, parameter names and encodings that make up most of
#: every BODYSTRUCTURE, quoted once.
_COMMON = {
    v: b'"%s"' % v.encode("ascii")
    for v in (
        "text", "plain", "html", "multipart", "mixed", "alternative", "related",
        "message", "rfc822", "application", "octet-stream", "image", "charset",
        "us-ascii", "utf-8", "iso-8859-1", "7bit", "8bit", "base64",
        "quoted-printable", "boundary", "name", "filename", "attachment", "inline",
    )
}


def _literal(raw: bytes) -> bytes:
    raw = raw.replace(b"\x00", b"\x80")
    return b"{%d}\r\n%s" % (len(raw), raw)
