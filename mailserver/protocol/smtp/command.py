"""SMTP command lines and MAIL/RCPT parameters (pure code: stdlib only, no I/O).

Sans-IO in h11's shape: ``CommandReader.feed(bytes)`` buffers what the client
sent, ``next_command()`` returns one ``Command`` or ``NEED_DATA``.  The reader
never touches a socket; the connection code feeds it and answers.

RFC 5321 §4.1.1 and §2.3.8::

    command      = verb [ SP argument ] CRLF
    verb         = 4ALPHA          ; HELO, EHLO, MAIL, RCPT, DATA, ... (any case)

RFC 5321 §4.5.3.1.4: a command line is at most 512 octets, CRLF included
(extensions raise it: RFC 1869 §4.1.2 adds room for parameters); a server may
accept longer.  A line over the limit is the peer's fault: ``LineTooLong``
carries the reply to send (``500 5.5.2``) and the reader skips to the end of
that line, so the connection can go on (RFC 5321 §4.2.4 allows "500").

A bare CR or a bare LF in a command line is refused (``500 5.5.2``): only
CRLF ends a line (RFC 5321 §2.3.8), and reading "LF" as an end of line is how
SMTP smuggling starts.

MAIL/RCPT arguments (RFC 5321 §4.1.2, RFC 1869 §6)::

    mail         = "MAIL FROM:" Reverse-path [SP Mail-parameters]
    rcpt         = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" /
                   Forward-path ) [SP Rcpt-parameters]
    esmtp-param  = esmtp-keyword ["=" esmtp-value]
    esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    esmtp-value  = 1*(%d33-60 / %d62-126)   ; RFC 6531 adds UTF-8

``parse_mail`` and ``parse_rcpt`` turn them into ``MailArgs`` / ``RcptArgs``:
SIZE (RFC 1870), BODY (RFC 6152, RFC 3030), SMTPUTF8 (RFC 6531), AUTH
(RFC 4954 §5, accepted and ignored), DSN's RET/ENVID/NOTIFY/ORCPT (RFC 3461).
Syntax errors raise ``ProtocolSyntaxError`` (``501 5.5.4``); a keyword we do
not support raises ``UnknownParameter`` (``555 5.5.4``, RFC 5321 §4.1.1.11).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

from mailserver.errors import ProtocolSyntaxError, SmtpReply
from mailserver.protocol.dsn_params import (
    MAIL_KEYWORDS,
    RCPT_KEYWORDS,
    MailDsn,
    RcptDsn,
)
from mailserver.protocol.dsn_params import parse_mail as _parse_mail_dsn
from mailserver.protocol.dsn_params import parse_rcpt as _parse_rcpt_dsn
from mailserver.protocol.smtp_address import parse_path

#: RFC 5321 §4.5.3.1.4: 512 octets for a command line, CRLF included.
MAX_COMMAND_LINE = 512
#: What ``next_command`` returns when a whole line is not buffered yet.
NEED_DATA: Final = "NEED_DATA"

_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_ESMTP_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\x80-\U0010ffff]+\Z")
_BODY_VALUES = frozenset({"7BIT", "8BITMIME", "BINARYMIME"})


class LineTooLong(ProtocolSyntaxError):
    """A command line over the limit (RFC 5321 §4.5.3.1.4); reply ``500 5.5.2``."""

    smtp = SmtpReply(500, "5.5.2", "Line too long")


class BadLineEnding(ProtocolSyntaxError):
    """A bare CR or LF in a command line (RFC 5321 §2.3.8); reply ``500 5.5.2``."""

    smtp = SmtpReply(500, "5.5.2", "Bare CR or LF not allowed")


class BadPath(ProtocolSyntaxError):
    """A MAIL/RCPT path outside the RFC 5321 §4.1.2 grammar; the connection answers
    ``501 5.1.7`` (sender) or ``501 5.1.3`` (recipient), RFC 3463 §3.2."""


class UnknownParameter(ProtocolSyntaxError):
    """A MAIL/RCPT parameter we do not implement (RFC 5321 §4.1.1.11): ``555 5.5.4``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.smtp = SmtpReply(555, "5.5.4", text)


@dataclass(frozen=True, slots=True)
class Command:
    """One command line: ``verb`` upper-cased ASCII, ``arg`` the rest (None when absent).

    ``arg`` keeps its case (addresses and xtext are case-sensitive) and loses
    the single space after the verb and trailing white space.
    """

    verb: str
    arg: str | None


def parse_command(line: str) -> Command:
    """One command line without its CRLF -> ``Command`` (RFC 5321 §4.1.1).

    An empty line gives verb "" (the caller answers ``500 5.5.2``).
    """
    verb, _, arg = line.partition(" ")
    verb = verb.strip().upper()
    arg = arg.strip()
    return Command(verb, arg or None)


class CommandReader:
    """Splits the client's bytes into command lines (see module doc).

    ``max_line`` counts octets, CRLF included.  The buffer never holds more
    than ``max_line`` octets of an unfinished line: once an unfinished line
    reaches the limit, ``LineTooLong`` is raised at once (the reply need not
    wait for an LF that may never come) and the rest of that line is dropped
    as it arrives, up to and including its LF.  Every complete line before it
    has been returned already, so replies stay in order (RFC 2920 §3.1).
    """

    __slots__ = ("max_line", "_buf", "_skipping")

    def __init__(self, max_line: int = MAX_COMMAND_LINE) -> None:
        if max_line < 3:
            raise ValueError("max_line must leave room for a verb and CRLF")
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> None:
        """Buffer ``data`` (any split of the stream; empty is fine)."""
        self._buf += data

    @property
    def trailing_data(self) -> bytes:
        """What is buffered and not yet returned (the start of DATA content, say)."""
        return bytes(self._buf)

    def take_trailing_data(self) -> bytes:
        """Return and forget what is buffered (the caller reads DATA content itself,
        or drops plaintext sent after STARTTLS: RFC 3207 §4.2)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def take_bytes(self, n: int) -> bytes:
        """Up to ``n`` buffered octets, removed from the buffer (a BDAT chunk's
        start, RFC 3030 §2: chunk octets follow the command line at once)."""
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def next_command(self) -> Command | Literal["NEED_DATA"]:
        """The next whole command line, or ``NEED_DATA``.

        Raises ``LineTooLong`` or ``BadLineEnding`` (peer errors) for one line;
        the reader then goes on with the next.  Non-UTF-8 octets are kept as
        surrogate escapes (RFC 6531 allows UTF-8 in paths and parameters).
        """
        line = self._next_line()
        if line is None:
            return NEED_DATA
        return parse_command(line.decode("utf-8", "surrogateescape"))

    def next_line(self) -> str | Literal["NEED_DATA"]:
        """The next whole line as text without its CRLF (an AUTH response,
        RFC 4954 §4), or ``NEED_DATA``; same limits and errors as ``next_command``."""
        line = self._next_line()
        if line is None:
            return NEED_DATA
        return line.decode("utf-8", "surrogateescape")

    def _next_line(self) -> bytes | None:
        buf = self._buf
        while True:
            end = buf.find(b"\n")
            if not self._skipping:
                break
            if end < 0:
                buf.clear()  # still inside the over-long line
                return None
            del buf[: end + 1]
            self._skipping = False
        if end < 0:
            if len(buf) >= self.max_line:
                buf.clear()
                self._skipping = True
                raise LineTooLong(f"Line too long (over {self.max_line} octets)")
            return None
        line = bytes(buf[: end + 1])
        del buf[: end + 1]
        if len(line) > self.max_line:
            raise LineTooLong(f"Line too long (over {self.max_line} octets)")
        if end == 0 or line[-2:-1] != b"\r" or b"\r" in line[:-2]:
            raise BadLineEnding("Bare CR or LF not allowed (RFC 5321 section 2.3.8)")
        return line[:-2]


def parse_bdat(arg: str | None) -> tuple[int, bool]:
    """BDAT's argument (RFC 3030 §2: ``chunk-size [SP end-marker]``, end-marker
    ``LAST``) -> (chunk size in octets, whether it is the last chunk).

    Raises ``ProtocolSyntaxError``: the caller cannot know how many octets
    follow, so the session cannot go on safely after it.
    """
    parts = (arg or "").split(" ")
    size = parts[0]
    if (not 1 <= len(parts) <= 2 or not size.isdigit() or not size.isascii() or len(size) > 20
            or (len(parts) == 2 and parts[1].upper() != "LAST")):
        raise ProtocolSyntaxError("Syntax: BDAT <chunk-size> [LAST]")
    return int(size), len(parts) == 2


# -- MAIL and RCPT arguments -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailArgs:
    """MAIL FROM's argument: ``address`` ("<>" for the null path) and its parameters.

    ``size`` is the SIZE= estimate in octets (RFC 1870 §6), ``body`` "7BIT",
    "8BITMIME" or "BINARYMIME" when given, ``smtputf8`` whether SMTPUTF8 was
    given (RFC 6531 §3.4), ``dsn`` RET/ENVID (RFC 3461 §4.3, §4.4);
    ``params`` the parameters as sent, one token each; ``requiretls`` whether
    REQUIRETLS was given (RFC 8689 §4.1; the caller checks the session is TLS).
    """

    address: str
    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    dsn: MailDsn | None = None
    params: tuple[str, ...] = field(default=(), compare=False)
    requiretls: bool = False


@dataclass(frozen=True, slots=True)
class RcptArgs:
    """RCPT TO's argument: ``address``, its NOTIFY/ORCPT (RFC 3461 §4.1, §4.2) and
    ``params``, the parameters as sent, one token each."""

    address: str
    dsn: RcptDsn | None = None
    params: tuple[str, ...] = field(default=(), compare=False)


def split_params(text: str) -> list[tuple[str, str | None]]:
    """``"SIZE=10 SMTPUTF8"`` -> ``[("SIZE", "10"), ("SMTPUTF8", None)]`` (RFC 5321 §4.1.2).

    Keywords upper-cased, values as sent.  Raises ``ProtocolSyntaxError``.
    """
    out: list[tuple[str, str | None]] = []
    for token in text.split():
        keyword, eq, value = token.partition("=")
        if not _ESMTP_KEYWORD.match(keyword):
            raise ProtocolSyntaxError(f"Bad parameter keyword: {keyword[:40]!r}")
        if eq and not _ESMTP_VALUE.match(value):
            raise ProtocolSyntaxError(f"Bad value for {keyword.upper()}")
        out.append((keyword.upper(), value if eq else None))
    return out


def _split_path(arg: str | None, keyword: str) -> tuple[str, str]:
    """``"FROM:<a@b> SIZE=1"`` -> ``("a@b", "SIZE=1")``; ``keyword`` "FROM:"/"TO:"."""
    if arg is None or arg[: len(keyword)].upper() != keyword:
        verb = "MAIL FROM" if keyword == "FROM:" else "RCPT TO"
        raise ProtocolSyntaxError(f"Syntax: {verb}:<address>")
    parsed = parse_path(arg[len(keyword):].lstrip())
    if parsed is None or not parsed[0]:
        raise BadPath("Bad address syntax")
    address, rest = parsed
    if address == "<>" and rest and not rest[0].isspace():
        raise BadPath("Bad address syntax")
    return address, rest.strip()


def _once(seen: set[str], keyword: str) -> None:
    if keyword in seen:
        raise ProtocolSyntaxError(f"{keyword} given twice")
    seen.add(keyword)


def parse_mail(arg: str | None) -> MailArgs:
    """MAIL's argument (after the verb) -> ``MailArgs`` (see module doc for errors)."""
    address, rest = _split_path(arg, "FROM:")
    size: int | None = None
    body: str | None = None
    smtputf8 = False
    requiretls = False
    dsn_tokens: list[str] = []
    seen: set[str] = set()
    for keyword, value in split_params(rest):
        _once(seen, keyword)
        if keyword == "SIZE":
            if value is None or not value.isdigit() or not value.isascii() or len(value) > 20:
                raise ProtocolSyntaxError("SIZE needs a number of octets (RFC 1870 section 6)")
            size = int(value)
        elif keyword == "BODY":
            body = (value or "").upper()
            if body not in _BODY_VALUES:
                raise ProtocolSyntaxError("BODY must be 7BIT or 8BITMIME (RFC 6152)")
        elif keyword == "SMTPUTF8":
            if value is not None:
                raise ProtocolSyntaxError("SMTPUTF8 takes no value (RFC 6531 section 3.4)")
            smtputf8 = True
        elif keyword == "REQUIRETLS":
            if value is not None:
                raise ProtocolSyntaxError("REQUIRETLS takes no value (RFC 8689 section 4.1)")
            requiretls = True
        elif keyword == "AUTH":
            pass  # RFC 4954 §5: accepted, ignored (we never relay with it)
        elif keyword in MAIL_KEYWORDS:
            dsn_tokens.append(f"{keyword}={value}" if value is not None else keyword)
        else:
            raise UnknownParameter(f"MAIL parameter not supported: {keyword}")
    dsn = _parse_mail_dsn(dsn_tokens) if dsn_tokens else None
    return MailArgs(address, size, body, smtputf8, dsn, tuple(rest.split()), requiretls)


def parse_rcpt(arg: str | None) -> RcptArgs:
    """RCPT's argument (after the verb) -> ``RcptArgs`` (see module doc for errors)."""
    address, rest = _split_path(arg, "TO:")
    if address == "<>":
        raise BadPath("Bad address syntax")
    dsn_tokens: list[str] = []
    seen: set[str] = set()
    for keyword, value in split_params(rest):
        _once(seen, keyword)
        if keyword in RCPT_KEYWORDS:
            dsn_tokens.append(f"{keyword}={value}" if value is not None else keyword)
        else:
            raise UnknownParameter(f"RCPT parameter not supported: {keyword}")
    dsn = _parse_rcpt_dsn(dsn_tokens) if dsn_tokens else None
    return RcptArgs(address, dsn, tuple(rest.split()))
