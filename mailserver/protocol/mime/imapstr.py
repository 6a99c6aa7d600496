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


def nstring(value: bytes | str | None) -> bytes:
    """``nstring``: NIL for None, else :func:`string`."""
    if value is None:
        return b"NIL"
    return string(value)


def string(value: bytes | str) -> bytes:
    """``string``: quoted (``"`` and ``\\`` escaped) or ``{n}\\r\\n`` literal.

    A ``str`` is taken to hold Latin-1 code points, i.e. raw header bytes.
    """
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    if len(raw) > MAX_QUOTED or _NEEDS_LITERAL.search(raw):
        raw = raw.replace(b"\x00", b"\x80")
        return b"{%d}\r\n%s" % (len(raw), raw)
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
