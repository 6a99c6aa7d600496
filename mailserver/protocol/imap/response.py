"""Encoders for server responses (RFC 3501 §7, §9): the bytes the IMAP server writes.

Whole-line helpers (``tagged``, ``untagged``, ``continuation``) end in CRLF.
Value helpers (``quote``, ``astring``, ``nstring``, ``literal``, ...) return
the octets of one value, for the server to join with spaces.

Response text is one line: a CR or LF in ``text`` would let a string smuggle a
second response onto the wire, so it is replaced by a space.  Strings that a
quoted string cannot carry (CR, LF, NUL, 8-bit) are sent as literals
(§4.3: "a literal [...] can contain any octet" except NUL in non-binary).

``literal`` sends its octets as given; message data that may hold NUL (not a
CHAR8, RFC 3501 §9) is made NUL-free by the caller (``imap.fetch_render``) or sent as
a ``literal8`` (RFC 3516 §4.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from mailserver.protocol.imap import utf7
from mailserver.protocol.imap.tokens import ASTRING_CHARS

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNSAFE_IN_QUOTED = frozenset(range(0x00, 0x20)) | frozenset(range(0x7F, 0x100))
_UNSAFE_IN_QUOTED_UTF8 = frozenset(range(0x00, 0x20)) | {0x7F}
_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")


def literal(data: bytes) -> bytes:
    """``literal = "{" number "}" CRLF *CHAR8`` (§4.3): ``b"{5}\\r\\nhello"``."""
    return b"{%d}\r\n" % len(data) + data


def literal8(data: bytes) -> bytes:
    """``literal8 = "~{" number64 "}" CRLF *OCTET`` (RFC 3516 §4.2): any octet,
    NUL included, for BINARY[] data."""
    return b"~{%d}\r\n" % len(data) + data


def _quote_bytes(data: bytes, *, utf8: bool) -> bytes:
    unsafe = _UNSAFE_IN_QUOTED_UTF8 if utf8 else _UNSAFE_IN_QUOTED
    if any(c in unsafe for c in data):
        return literal(data)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def quote(s: str | bytes, *, utf8: bool = False) -> bytes:
    """A ``quoted`` string (§4.3, escaping ``"`` and ``\\``), or a ``literal``
    when ``s`` holds CR, LF, other controls or — unless ``utf8`` (RFC 6855 §3,
    RFC 9051 allow UTF-8 in quoted strings) — 8-bit octets.  ``str`` is sent
    as UTF-8."""
    data = s.encode("utf-8") if isinstance(s, str) else s
    return _quote_bytes(data, utf8=utf8)


def astring(s: str | bytes, *, utf8: bool = False) -> bytes:
    """``astring = 1*ASTRING-CHAR / string``: an atom when possible
    (not empty, not "NIL", only ASTRING-CHARs), else ``quote(s)``."""
    data = s.encode("utf-8") if isinstance(s, str) else s
    if data and data.upper() != b"NIL" and all(c in ASTRING_CHARS for c in data):
        return data
    return _quote_bytes(data, utf8=utf8)


def nstring(data: bytes | None, *, utf8: bool = False) -> bytes:
    """``nstring = string / nil`` (§4.5): ``NIL`` for None."""
    if data is None:
        return b"NIL"
    return _quote_bytes(data, utf8=utf8)


def mailbox_name(name: str, utf8: bool = False) -> bytes:
    """A mailbox name as ``mailbox`` (astring): modified UTF-7 (§5.1.3) unless the
    client enabled UTF8=ACCEPT (RFC 6855 §3), then raw UTF-8.

    Always quoted (or a literal), never an atom: some clients mis-handle atom
    names with "]" or "*" in LIST responses, and a quoted string is always valid.
    """
    if utf8:
        return quote(name, utf8=True)
    return quote(utf7.encode(name))


_FLAG_LISTS: dict[frozenset[str], bytes] = {}


def flag_list(flags: Iterable[str]) -> bytes:
    """``flag-list = "(" [flag *(SP flag)] ")"``: system flags first in the
    usual order, then keywords sorted, so output is stable.  A frozenset's
    rendering is remembered (mailboxes share few distinct flag sets, and
    FETCH FLAGS renders one per message)."""
    if isinstance(flags, frozenset):
        got = _FLAG_LISTS.get(flags)
        if got is None:
            got = _render_flags(flags)
            if len(_FLAG_LISTS) < 4096:  # bounded against keyword-spraying clients
                _FLAG_LISTS[flags] = got
        return got
    return _render_flags(flags)


def _render_flags(flags: Iterable[str]) -> bytes:
    flags = set(flags)
    system = [f for f in _ORDER if f in flags]
    rest = sorted(flags.difference(_ORDER))
    return b"(" + " ".join(system + rest).encode("utf-8") + b")"


def internal_date(ts: int, tz_offset_minutes: int = 0) -> bytes:
    """``date-time`` (§9) in quotes: ``b'"17-Jul-1996 02:44:25 -0700"'``.

    ``ts`` is seconds since the epoch (UTC); ``tz_offset_minutes`` the zone
    the date is shown in (east of UTC positive, as in the zone's sign).
    """
    local = dt.datetime.fromtimestamp(ts, dt.UTC) + dt.timedelta(minutes=tz_offset_minutes)
    sign = "-" if tz_offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(tz_offset_minutes), 60)
    # date-day-fixed = (SP DIGIT) / 2DIGIT: the 2DIGIT form, as Dovecot sends
    # it, for clients that parse with strptime("%d-%b-%Y") and choke on a space.
    text = (
        f"{local.day:02d}-{_MONTHS[local.month - 1]}-{local.year:04d} "
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d} {sign}{hours:02d}{minutes:02d}"
    )
    return b'"' + text.encode("ascii") + b'"'


def _one_line(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return data.replace(b"\r", b" ").replace(b"\n", b" ")


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """``response-tagged = tag SP resp-cond-state CRLF`` (§7.1):
    ``tagged("a1", "NO", "gone", "NONEXISTENT")`` -> ``b"a1 NO [NONEXISTENT] gone\\r\\n"``.
    An empty ``text`` becomes the status word (``text`` must be 1*TEXT-CHAR)."""
    body = _one_line(text) or status.encode("ascii")
    prefix = f"{tag} {status} ".encode("ascii")
    if code:
        prefix += b"[" + _one_line(code) + b"] "
    return prefix + body + b"\r\n"


def untagged(text: str | bytes) -> bytes:
    """``"*" SP text CRLF`` (§7): ``untagged("3 EXISTS")`` -> ``b"* 3 EXISTS\\r\\n"``.

    ``text`` is sent as given apart from the trailing CRLF, so it may contain
    literals built with ``literal``/``nstring`` (e.g. a FETCH response); only
    a trailing CR/LF is stripped."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return b"* " + data.rstrip(b"\r\n") + b"\r\n"


def continuation(text: str = "Ready") -> bytes:
    """``continue-req = "+" SP (resp-text / base64) CRLF`` (§7.5)."""
    return b"+ " + (_one_line(text) or b"Ready") + b"\r\n"
