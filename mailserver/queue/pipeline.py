"""Command pipelining for the envelope phase of outbound delivery (RFC 2920).

aiosmtplib reads exactly one reply per command written: its protocol parses
only the first reply in its buffer and drops bytes that arrive while no
command is outstanding, so several replies in one TCP segment would be lost.
For the envelope (MAIL FROM and every RCPT TO in one write) we therefore lend
the connection's transport to ``_ReplyReader`` for the duration of the
exchange — ``transport.set_protocol`` works the same on plain and TLS
transports — and give it back to aiosmtplib afterwards.  Connect, EHLO,
STARTTLS, AUTH and DATA stay with aiosmtplib.

RFC 2920 §3.1: a client may put DATA last in the batch, but when every RCPT
fails a server may still answer DATA with 354 and the client must then send
an empty message to get out of the data state.  We do the safe thing: DATA
is sent only after all RCPT replies were read, and only if one was positive.

The message itself goes the same way when the server offers CHUNKING
(RFC 3030 §2): ``bdat_last`` sends ``BDAT <size> LAST`` and the octets as
they are (no dot-stuffing, no end-of-data line) and reads the one reply.

``NextHopReplyParser`` is pure (feed bytes, take replies) and bounded: a reply line
longer than ``MAX_LINE`` or a reply longer than ``MAX_REPLY`` is a protocol
error, as is a line that does not start with a three-digit code or a
continuation line whose code differs from the first (RFC 5321 §4.2.1).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

#: Longest reply line we accept, octets (RFC 5321 §4.5.3.1.5 says 512; be lenient).
MAX_LINE = 8192
#: Longest multi-line reply, octets.
MAX_REPLY = 4 * MAX_LINE


class NextHopReplyError(Exception):
    """The next hop (the server we deliver to) sent something that is not an
    SMTP reply (RFC 5321 §4.2): the peer's fault, as h11's RemoteProtocolError."""


class Disconnected(Exception):
    """The connection closed while replies were outstanding."""


@dataclass(frozen=True, slots=True)
class NextHopReply:
    """One SMTP reply read from the next hop (the server we deliver to), as
    opposed to the replies our own server sends (``errors.SmtpReply``):
    ``code`` (e.g. 250) and ``text`` (lines joined with "\\n")."""

    code: int
    text: str


class NextHopReplyParser:
    """Splits the next hop's byte stream into replies (RFC 5321 §4.2.1).

    ``feed(data)`` buffers; ``next_reply()`` returns a ``NextHopReply`` or None when
    more data is needed.  Raises ``NextHopReplyError`` on malformed or oversized input.
    Lines may end in CRLF or a bare LF (tolerated from servers, RFC 5321 §4.1.1.4
    robustness).
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Octets buffered but not yet returned as a reply."""
        return len(self._buf)

    def next_reply(self) -> NextHopReply | None:
        offset = 0
        code: bytes | None = None
        lines: list[str] = []
        while True:
            end = self._buf.find(b"\n", offset)
            if end == -1:
                # Incomplete: bounded, so a server cannot make us buffer forever.
                if len(self._buf) - offset > MAX_LINE or len(self._buf) > MAX_REPLY:
                    raise NextHopReplyError("reply too long")
                return None
            line = bytes(self._buf[offset:end]).rstrip(b"\r")
            if len(line) > MAX_LINE or end + 1 > MAX_REPLY:
                raise NextHopReplyError("reply too long")
            # Reply-line = Reply-code [ SP / "-" text ] CRLF  (RFC 5321 §4.2)
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
                raise NextHopReplyError(f"malformed reply line: {line[:80]!r}")
            if code is None:
                code = line[:3]
            elif line[:3] != code:
                raise NextHopReplyError("continuation line with a different reply code")
            lines.append(line[4:].decode("utf-8", "replace").strip())
            offset = end + 1
            if line[3:4] != b"-":
                del self._buf[:offset]
                return NextHopReply(int(code), "\n".join(lines))


class _ReplyReader(asyncio.Protocol):
    """Feeds a ``NextHopReplyParser`` while it holds the transport; wakes ``wait_reply``.

    ``connection_lost`` and flow control are passed on to ``owner`` (aiosmtplib's
    protocol) so its state is right when the transport is handed back.
    """

    def __init__(self, owner: asyncio.BaseProtocol) -> None:
        self._owner = owner
        self._parser = NextHopReplyParser()
        self._replies: collections.deque[NextHopReply] = collections.deque()
        self._error: Exception | None = None
        self._event = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        try:
            self._parser.feed(data)
            while (reply := self._parser.next_reply()) is not None:
                self._replies.append(reply)
        except NextHopReplyError as exc:
            self._error = exc
        self._event.set()

    def eof_received(self) -> bool:
        if self._error is None:
            self._error = Disconnected("the server closed the connection")
        self._event.set()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._error is None:
            self._error = Disconnected(f"connection lost: {exc}" if exc else "connection lost")
        self._event.set()
        self._owner.connection_lost(exc)

    # Flow control belongs to the owner, which gets the transport back.
    def pause_writing(self) -> None:
        self._owner.pause_writing()

    def resume_writing(self) -> None:
        self._owner.resume_writing()

    @property
    def leftover(self) -> int:
        return self._parser.pending + len(self._replies)

    async def wait_reply(self) -> NextHopReply:
        while not self._replies:
            if self._error is not None:
                raise self._error
            self._event.clear()
            await self._event.wait()
        return self._replies.popleft()


async def exchange(protocol: Any, commands: Sequence[bytes], timeout: float) -> list[NextHopReply]:
    """Write ``commands`` (each a full line ending in CRLF) in one write; read one reply each.

    ``protocol``: the ``aiosmtplib.protocol.SMTPProtocol`` of a connected
    client with no command outstanding; it gets its transport back before
    this returns or raises.  ``timeout``: seconds for each reply (RFC 5321
    §4.5.3.2 sets one per command).  Raises ``NextHopReplyError``, ``Disconnected``,
    ``TimeoutError``, or ``ValueError`` for a command with a bare CR or LF.
    """
    for cmd in commands:
        if not cmd.endswith(b"\r\n") or b"\r" in cmd[:-2] or b"\n" in cmd[:-2]:
            raise ValueError("a command is one line ending in CRLF")
    async with _lent(protocol) as (transport, reader):
        transport.write(b"".join(commands))  # RFC 2920 §3.1: one batch, one write
        replies = []
        for _ in commands:
            async with asyncio.timeout(timeout):
                replies.append(await reader.wait_reply())
        if reader.leftover:
            # More than one reply per command: the server is out of step with us.
            raise NextHopReplyError("unexpected data after the last reply")
        return replies


@contextlib.asynccontextmanager
async def _lent(protocol: Any) -> AsyncIterator[tuple[Any, _ReplyReader]]:
    """Lend ``protocol``'s transport to a ``_ReplyReader`` for one exchange and
    give it back after (unless closing).  Raises ``Disconnected`` when there is
    no open transport."""
    transport = protocol.transport
    if transport is None or transport.is_closing():
        raise Disconnected("not connected")
    reader = _ReplyReader(protocol)
    transport.set_protocol(reader)
    try:
        yield transport, reader
    finally:
        if not transport.is_closing():
            transport.set_protocol(protocol)


async def bdat_last(protocol: Any, message: bytes, timeout: float) -> NextHopReply:
    """Send ``message`` as one ``BDAT <size> LAST`` chunk (RFC 3030 §2) and
    read its reply; the transport is lent as for ``exchange``.  ``timeout``:
    seconds for the reply (the end of data's, RFC 5321 §4.5.3.2.6).  Raises
    ``NextHopReplyError``, ``Disconnected`` or ``TimeoutError``."""
    async with _lent(protocol) as (transport, reader):
        transport.write(b"BDAT %d LAST\r\n" % len(message))
        transport.write(message)
        async with asyncio.timeout(timeout):
            reply = await reader.wait_reply()
        if reader.leftover:
            raise NextHopReplyError("unexpected data after the BDAT reply")
        return reply
