"""The sans-IO IMAP command receiver: bytes in, typed commands out (after h11).

Design notes
------------
The server feeds whatever the socket gave it (``feed``) and pulls events
(``next_event``) until ``NEED_DATA``.  Nothing here does I/O or knows about
sessions; the server decides what to do with each event.

Framing (RFC 3501 §2.2, §4.3, §7.5; RFC 7888 LITERAL+/LITERAL-)::

    command   = tag SP ... CRLF            ; lines, possibly interrupted by literals
    literal   = "{" number ["+"] "}" CRLF *CHAR8
    literal8  = "~{" number ["+"] "}" CRLF *OCTET   ; RFC 3516

A line ending in a literal announcement is followed by exactly that many
octets; the command then continues on the next line.  For a synchronizing
literal ``{n}`` the receiver yields ``NeedContinuation`` once, as soon as the
announcing line is complete (whether or not the octets are already buffered,
so the event sequence does not depend on how the input was chunked); the
server answers ``+ Ready``.  A non-synchronizing ``{n+}`` yields nothing.
We advertise LITERAL+ (RFC 7888 §3), so ``{n+}`` and ``~{n+}`` are taken at
any size up to ``max_literal``; the 4096-octet cap of LITERAL- (§4, and of
IMAP4rev2's base grammar) binds clients, not us, and LITERAL+ is the superset.

Invariants
----------
* Memory is bounded: the non-literal text of one command (all its lines
  together, CRLFs excluded) is at most ``max_line`` octets; the literals of
  one command at most ``max_literal`` octets in total.
* After every ``ProtocolSyntaxError`` that is not ``fatal`` the receiver is
  positioned at the start of the next command: the rest of the bad line is
  discarded (even if it has not arrived yet).
* Over-long line: BAD (tagged when the tag was read), the line is skipped up
  to its LF, the connection stays usable.
* Over-size literal: ``{n}`` is refused with a non-fatal BAD — we never sent
  "+", so a compliant client sends nothing more for that command (§7.5).
  ``{n+}`` is fatal: its octets are already on their way and RFC 7888 §4 says
  the server must then reject the command and close the connection.
* Both CRLF and a bare LF end a line (clients in the wild send either).
* NUL octets are refused in command text (``CHAR`` excludes them) but
  accepted in literals: messages with NULs exist (see the corpus) and the
  store keeps octets as they are.
"""

from __future__ import annotations

import enum
import re

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.imap.parser import parse_command
from mailserver.protocol.imap.tokens import DEFAULT_MAX_DEPTH
from mailserver.protocol.imap.types import NEED_DATA, Command, Line, NeedContinuation, _NeedData

# tag = 1*<any ASTRING-CHAR except "+">  (RFC 3501 §9)
# ASTRING-CHAR = ATOM-CHAR / "]"; ATOM-CHAR excludes "(" ")" "{" SP CTL "%" "*" DQUOTE "\"
_TAG_CHARS = bytes(c for c in range(0x21, 0x7F) if c not in b'(){%*"\\+')
_TAG_RE = re.compile(b"[" + re.escape(_TAG_CHARS) + b"]+")
# A literal announcement at the end of a line; number is at most 20 digits so
# that int() stays cheap; the size check does the rest.
_LITERAL_RE = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")

#: Text of the error for a literal over ``max_literal``; stable, so the server
#: can answer ``NO [TOOBIG]`` instead of BAD (RFC 5530 §3) when the tag is known.
LITERAL_TOO_BIG = "Literal too big"


class Receiving(enum.Enum):
    """What the receiver is in the middle of (``Receiver.receiving``), for the
    server's deadlines: the text of a command, a literal, or nothing."""

    NOTHING = "nothing"  # between commands, no octet of the next one buffered
    LINE = "line"  # part of a command's text (or a raw Line, or a line being discarded)
    LITERAL = "literal"  # octets of an announced literal are still due


class _State(enum.Enum):
    COMMAND = "command"  # reading a command line (first or continuation)
    LITERAL = "literal"  # reading the octets of a literal
    LINE = "line"  # the next line is a raw Line (expect_line)
    DISCARD = "discard"  # skipping the rest of a bad line, up to LF
    CLOSED = "closed"  # a fatal error happened; nothing more is parsed


def read_tag(line: bytes) -> str | None:
    """The tag at the start of ``line`` if it is a valid ``tag`` followed by SP
    (RFC 3501 §9), else ``None``."""
    m = _TAG_RE.match(line)
    if m is None or m.end() >= len(line) or line[m.end()] != 0x20:
        return None
    return m.group().decode("ascii")


class Receiver:
    """Frames and parses IMAP client commands (RFC 3501 §2.2, §9; RFC 7888).

    ``max_line``: limit, in octets, on the text of one command outside its
    literals (lines joined, line ends excluded).  ``max_literal``: limit on the
    total size of the literals of one command.  Crossing either raises
    ``ProtocolSyntaxError`` as described in the module notes.  ``max_depth``:
    deepest nesting of parenthesised lists and search keys (a BAD beyond).

    ``utf8`` may be set by the server once the client has enabled
    ``UTF8=ACCEPT`` (RFC 6855 §3): mailbox names are then taken as UTF-8
    instead of being decoded from modified UTF-7.
    """

    def __init__(self, max_line: int = 65536, max_literal: int = 50 * 1024 * 1024,
                 max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        if max_line < 16 or max_literal < 0 or max_depth < 1:
            raise ValueError("max_line must be >= 16, max_literal >= 0, max_depth >= 1")
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_depth = max_depth
        self.utf8 = False
        self._buf = bytearray()
        self._scan_from = 0  # where to resume looking for LF in _buf
        self._state = _State.COMMAND
        self._parts: list[bytes] = []  # lines of the current command, line ends removed
        self._literals: list[bytes] = []  # literal i follows _parts[i]
        self._line_total = 0
        self._literal_total = 0
        self._literal_need = 0
        self._pending: NeedContinuation | None = None

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Append octets received from the client.  ``b""`` is allowed and
        means nothing (EOF is the server's business)."""
        self._buf += data

    def expect_line(self) -> None:
        """Make the next event a raw ``Line`` (IDLE's ``DONE``, RFC 2177 §3; an
        AUTHENTICATE response, RFC 3501 §6.2.2).  Only valid between commands;
        calling it elsewhere is our bug and raises ``RuntimeError``."""
        if self._state is not _State.COMMAND or self._parts:
            raise RuntimeError("expect_line() called in the middle of a command")
        self._state = _State.LINE

    @property
    def buffered(self) -> int:
        """Octets received but not yet consumed (for diagnostics and tests)."""
        return len(self._buf)

    @property
    def receiving(self) -> Receiving:
        """What the input so far leaves unfinished: ``LITERAL`` while the
        octets of a literal are due, ``LINE`` while a command (or a raw line,
        or the rest of an over-long line being discarded) has begun but not
        ended, ``NOTHING`` between commands.  Meaningful once ``next_event``
        has returned ``NEED_DATA``."""
        state = self._state
        if state is _State.LITERAL:
            return Receiving.LITERAL
        if state is _State.DISCARD or self._parts or self._buf:
            return Receiving.LINE
        return Receiving.NOTHING

    @property
    def at_boundary(self) -> bool:
        """True when nothing of a next command has been received: no partial
        command, no pending literal, no buffered octets.  (After STARTTLS the
        server checks this: plaintext pipelined behind it must not be read as
        if it came over TLS — RFC 3501 §6.2.1 / RFC 2595 §3.1.)"""
        return (
            self._state in (_State.COMMAND, _State.LINE)
            and not self._parts
            and not self._buf
            and self._pending is None
        )

    # ----------------------------------------------------------------- events

    def next_event(self) -> Command | NeedContinuation | Line | _NeedData:
        """The next event, or ``NEED_DATA`` when more input is needed.

        Raises ``ProtocolSyntaxError`` for input that does not frame or parse;
        afterwards (unless ``fatal``) the receiver is at the next command.
        """
        while True:
            if self._pending is not None:
                event, self._pending = self._pending, None
                return event
            state = self._state
            if state is _State.LITERAL:
                if not self._take_literal():
                    return NEED_DATA
                continue
            if state is _State.DISCARD:
                if not self._discard_line():
                    return NEED_DATA
                continue
            if state is _State.CLOSED:
                raise ProtocolSyntaxError("Connection is unusable", fatal=True)
            line = self._take_line()
            if line is None:
                return NEED_DATA
            if state is _State.LINE:
                self._state = _State.COMMAND
                return Line(line)
            result = self._command_line(line)
            if result is not None:
                return result

    # -------------------------------------------------------------- internals

    def _tag(self) -> str | None:
        first = self._parts[0] if self._parts else bytes(self._buf[: self.max_line])
        return read_tag(first)

    def _reset(self) -> None:
        self._parts = []
        self._literals = []
        self._line_total = 0
        self._literal_total = 0
        self._literal_need = 0

    def _take_line(self) -> bytes | None:
        """Remove and return one line without its CRLF/LF, or None if the LF
        has not arrived.  Enforces ``max_line``."""
        idx = self._buf.find(b"\n", self._scan_from)
        budget = self.max_line - self._line_total
        if idx < 0:
            self._scan_from = len(self._buf)
            # +1: a CR may still be waiting for its LF.
            if len(self._buf) > budget + 1:
                self._overlong(discard=True)
            return None
        self._scan_from = 0
        line = bytes(self._buf[:idx])
        del self._buf[: idx + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > budget:
            self._overlong(discard=False, line=line)
        return line

    def _overlong(self, *, discard: bool, line: bytes | None = None) -> None:
        if self._state is _State.LINE:
            tag = None
        elif self._parts:
            tag = self._tag()
        else:
            tag = read_tag(line if line is not None else bytes(self._buf[: self.max_line]))
        self._reset()
        if discard:
            self._state = _State.DISCARD
        elif self._state is _State.LINE:
            self._state = _State.COMMAND
        raise ProtocolSyntaxError("Line too long", tag=tag)

    def _discard_line(self) -> bool:
        idx = self._buf.find(b"\n")
        if idx < 0:
            self._buf.clear()
            return False
        del self._buf[: idx + 1]
        self._scan_from = 0
        self._state = _State.COMMAND
        return True

    def _take_literal(self) -> bool:
        need = self._literal_need
        if len(self._buf) < need:
            return False
        with memoryview(self._buf) as view:  # one copy of a possibly large literal
            self._literals.append(bytes(view[:need]))
        del self._buf[:need]
        self._scan_from = 0
        self._literal_need = 0
        self._state = _State.COMMAND
        return True

    def _command_line(self, line: bytes) -> Command | NeedContinuation | None:
        """Handle one complete command line; None means "go on reading"."""
        if not self._parts and not line:
            raise ProtocolSyntaxError("Empty command line")
        self._parts.append(line)
        self._line_total += len(line)
        m = _LITERAL_RE.search(line)
        if b"\x00" in line and (m is None or not m.group(3)):
            # A NUL never parses; a "{n}" literal is not sent without our "+".
            tag = self._tag()
            self._reset()
            raise ProtocolSyntaxError("NUL octet in command", tag=tag)
        if m is None:
            if any(b"\x00" in part for part in self._parts):
                # Rejected only now, after its "{n+}" literals were framed and
                # skipped: their octets must never run as a command.
                tag = self._tag()
                self._reset()
                raise ProtocolSyntaxError("NUL octet in command", tag=tag)
            parts, literals = self._parts, self._literals
            self._reset()
            try:
                return parse_command(parts, literals, utf8=self.utf8, max_depth=self.max_depth)
            except ProtocolSyntaxError as exc:
                if exc.tag is None:  # the tag is read only when a reply needs it
                    exc.tag = read_tag(parts[0])
                raise
        size = int(m.group(2))
        sync = not m.group(3)
        tag = self._tag()
        if self._literal_total + size > self.max_literal:
            self._reset()
            if sync:
                # §7.5: no "+" was sent, so the client sends no literal.
                raise ProtocolSyntaxError(LITERAL_TOO_BIG, tag=tag)
            # RFC 7888 §4: the octets are coming anyway; we must close.
            self._state = _State.CLOSED
            raise ProtocolSyntaxError(LITERAL_TOO_BIG, tag=tag, fatal=True)
        if sync and tag is None:
            # Never invite a literal for a line that is not a command.
            self._reset()
            raise ProtocolSyntaxError("Invalid tag")
        self._literal_total += size
        self._literal_need = size
        self._state = _State.LITERAL
        if sync:
            # Returned before the octets are consumed: the server sends "+".
            return NeedContinuation(tag or "", size)
        return None
