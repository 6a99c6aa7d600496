"""Decoding the DATA content of an SMTP transaction, in bulk (pure code, no I/O).

RFC 5321 §4.1.1.4: the content ends at the line "." — the octets
CRLF "." CRLF, where the first CRLF ends the last content line (or the DATA
command, for an empty message).  §4.5.2: a line that starts with "." had a
"." added by the client; the receiver removes it.

aiosmtpd read DATA one line at a time (``readuntil`` and a Python loop
per line).  This decoder takes the stream in chunks instead: it looks for
the end marker with ``bytearray.find``, undoes the dot-stuffing with one
``replace`` and checks line lengths only when a region is long enough to
hold an over-long line.  Same rules as before, and as mox's reader:

* only CRLF ends a line: a bare LF or bare CR is content, so "LF . LF"
  never ends the message (SMTP smuggling) and nothing is normalised;
* a line longer than ``max_line`` octets, CRLF included (RFC 5321
  §4.5.3.1.6 allows a server its own limit), or content longer than
  ``max_size`` octets (RFC 1870) makes the transaction fail *after* the end
  marker (the client is still sending; §4.2.5): the data is dropped as it
  comes, memory stays bounded, and ``error`` says which reply to give.
"""

from __future__ import annotations

import enum

_END = b"\r\n.\r\n"
_CRLF = b"\r\n"


class DataError(enum.Enum):
    """Why the content was refused (the adapter's replies: 500 5.5.2, 552 5.3.4)."""

    LINE_TOO_LONG = "line too long"
    TOO_MUCH = "too much data"
    BARE_LINE_ENDING = "bare CR or LF"


def _has_bare_line_ending(buf: bytearray) -> bool:
    """Whether ``buf`` has a CR not followed by LF or an LF not after a CR."""
    crlf = buf.count(_CRLF)
    return buf.count(b"\r") != crlf or buf.count(b"\n") != crlf


class DataDecoder:
    """Feed the bytes after the ``354`` reply; ``feed`` returns what follows the end.

    ``max_size``: most content octets (dot-stuffing and CRLFs counted as
    sent, the final "." line not; None or 0: no limit).  ``max_line``: most
    octets in one line, CRLF included.  ``reject_bare_line_endings``: a CR or
    LF outside a CRLF anywhere in the content fails the transaction
    (``DataError.BARE_LINE_ENDING``, checked once at the end marker).
    """

    __slots__ = ("_buf", "_line_start", "_max_line", "_max_size", "_strict", "done", "error",
                 "_content")

    def __init__(self, *, max_size: int | None, max_line: int,
                 reject_bare_line_endings: bool = False) -> None:
        # The CRLF that ended the DATA command: a first line "." is at a line start.
        self._buf = bytearray(_CRLF)
        self._line_start = len(_CRLF)  # start of the first line not yet length-checked
        self._max_size = max_size or 0
        self._max_line = max_line
        # mox's rule (and Postfix's smtpd_forbid_bare_newline): refuse content
        # with a CR or LF outside a CRLF.  Off by default: the end marker is
        # CRLF.CRLF only, so accepting them is already smuggling-safe.
        self._strict = reject_bare_line_endings
        self.done = False
        self.error: DataError | None = None
        self._content = b""

    def feed(self, data: bytes) -> bytes | None:
        """Take the next bytes of the stream.

        Returns None while the end marker has not been seen (everything was
        consumed); once it has, the bytes after it (the client's next
        commands, possibly empty), and ``done`` is True.
        """
        if self.done:
            raise RuntimeError("DATA already complete")
        buf = self._buf
        search_from = max(0, len(buf) - len(_END) + 1)
        buf += data
        end = buf.find(_END, search_from)
        stop = len(buf) if end < 0 else end + len(_CRLF)  # content ends with that CRLF
        if self.error is None:
            self._check(stop, final=end >= 0)
        if end < 0:
            if self.error is not None:
                # Refused already: keep only what may begin the end marker.
                del buf[: len(buf) - (len(_END) - 1)]
            return None
        self.done = True
        rest = bytes(buf[end + len(_END):])
        if self.error is None:
            del buf[stop:]
            if self._strict and _has_bare_line_ending(buf):
                self.error = DataError.BARE_LINE_ENDING
                self._buf = bytearray()
                return rest
            if buf.find(b"\r\n.") >= 0:
                buf = buf.replace(b"\r\n.", _CRLF)  # §4.5.2: one leading "." per line
            self._content = bytes(buf[len(_CRLF):])
        self._buf = bytearray()
        return rest

    def _check(self, stop: int, *, final: bool) -> None:
        """Size and line-length checks over ``_buf[:stop]`` (content so far).

        Until the end marker is seen, the last two octets may be the "." and CR
        of the final line, which is not content: they are not counted yet.
        """
        buf = self._buf
        size = stop - len(_CRLF) - (0 if final else 2)
        if self._max_size and size > self._max_size:
            self.error = DataError.TOO_MUCH
            return
        if stop - self._line_start <= self._max_line:
            return  # no line in this stretch can be too long yet
        pos = self._line_start
        while True:
            i = buf.find(_CRLF, pos, stop)
            if i < 0:
                break
            if i + len(_CRLF) - pos > self._max_line:
                self.error = DataError.LINE_TOO_LONG
                return
            pos = i + len(_CRLF)
        self._line_start = pos
        # An unfinished line already longer than the limit (even if the last
        # octet is the CR of its CRLF) can only end too long.
        if stop - pos > self._max_line:
            self.error = DataError.LINE_TOO_LONG

    @property
    def content(self) -> bytes:
        """The message as sent, dot-stuffing undone (valid once ``done``, without ``error``)."""
        if not self.done or self.error is not None:
            raise RuntimeError("no content")
        return self._content
