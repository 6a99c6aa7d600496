"""A minimal asyncio IMAP client for the benchmarks (not a general client).

It speaks just enough of RFC 3501 / RFC 9051 to drive a server hard: tagged
commands, responses read line by line with literals (``{n}`` at a line's end,
§4.3) read whole, synchronising literals for APPEND (§7.5: wait for ``+``),
and IDLE (RFC 2177).  Every await is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import re

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class ImapError(Exception):
    """The server answered NO/BAD/BYE, or spoke something we do not expect."""


class Client:
    """One IMAP connection.  ``await Client.connect(host, port)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self._n = 0

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 60.0) -> Client:
        async with asyncio.timeout(timeout):
            # A SEARCH answer on a 1,000,000-message mailbox is one ~7 MB line.
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 25)
            c = cls(reader, writer, timeout)
            greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"greeting {greeting[:80]!r}")
        return c

    async def _response_line(self) -> bytes:
        """One response, literals included (may span several physical lines)."""
        parts = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ImapError("connection closed")
            parts.append(line)
            m = _LITERAL.search(line)
            if m is None:
                return b"".join(parts)
            parts.append(await self.reader.readexactly(int(m.group(1))))

    def _tag(self) -> bytes:
        self._n += 1
        return b"b%d" % self._n

    async def command(self, line: bytes, literal: bytes | None = None) -> list[bytes]:
        """Send ``TAG line`` (then ``literal`` after ``+``); return the untagged responses.

        Raises ImapError on NO/BAD.
        """
        tag = self._tag()
        async with asyncio.timeout(self.timeout):
            if literal is None:
                self.writer.write(tag + b" " + line + b"\r\n")
            else:
                self.writer.write(tag + b" " + line + b" {%d}\r\n" % len(literal))
                cont = await self._response_line()
                if not cont.startswith(b"+"):
                    raise ImapError(f"no continuation: {cont[:80]!r}")
                self.writer.write(literal + b"\r\n")
            untagged = []
            while True:
                resp = await self._response_line()
                if resp.startswith(tag + b" "):
                    if resp[len(tag) + 1 : len(tag) + 3] != b"OK":
                        raise ImapError(resp[:200].decode("latin-1"))
                    return untagged
                untagged.append(resp)

    async def login(self, user: str, password: str) -> None:
        await self.command(f'LOGIN "{user}" "{password}"'.encode())

    async def idle_start(self) -> None:
        """Send IDLE and wait for the continuation (RFC 2177 §3)."""
        self._idle_tag = self._tag()
        async with asyncio.timeout(self.timeout):
            self.writer.write(self._idle_tag + b" IDLE\r\n")
            while True:
                resp = await self._response_line()
                if resp.startswith(b"+"):
                    return
                if resp.startswith(self._idle_tag):
                    raise ImapError(resp[:200].decode("latin-1"))

    async def idle_done(self) -> list[bytes]:
        """Send DONE and read up to the tagged OK; returns the untagged responses."""
        async with asyncio.timeout(self.timeout):
            self.writer.write(b"DONE\r\n")
            untagged = []
            while True:
                resp = await self._response_line()
                if resp.startswith(self._idle_tag + b" "):
                    return untagged
                untagged.append(resp)

    async def read_untagged(self) -> bytes:
        """The next response line (used while IDLE-ing); no timeout of its own."""
        return await self._response_line()

    async def close(self) -> None:
        try:
            async with asyncio.timeout(5):
                self.writer.write(b"z LOGOUT\r\n")
                await self.writer.drain()
        except (OSError, TimeoutError):
            pass
        self.writer.close()
        try:
            async with asyncio.timeout(5):
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            pass


def exists_count(untagged: list[bytes]) -> int | None:
    """The last ``* n EXISTS`` in ``untagged``, or None."""
    n = None
    for line in untagged:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == b"*" and parts[2].upper() == b"EXISTS":
            n = int(parts[1])
    return n


def status_messages(untagged: list[bytes]) -> int:
    """MESSAGES from a ``* STATUS`` response."""
    for line in untagged:
        m = re.search(rb"MESSAGES (\d+)", line)
        if m:
            return int(m.group(1))
    raise ImapError("no STATUS MESSAGES")
