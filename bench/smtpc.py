"""A minimal asyncio SMTP client that times end-of-DATA -> 250 (RFC 5321 §4.1.1.4).

One connection sends many transactions (RSET-free: after 250 the next MAIL
starts, §4.1.4).  The clock starts when the final ``CRLF.CRLF`` has been
handed to the kernel and stops when the complete reply line has been read.
"""

from __future__ import annotations

import asyncio
import time


class SmtpError(Exception):
    """An unexpected reply."""


class Sender:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 30.0) -> Sender:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            s = cls(reader, writer)
            await s._reply(220)
            writer.write(b"EHLO bench.example.net\r\n")
            await s._reply(250)
        return s

    async def _reply(self, want: int) -> bytes:
        while True:
            line = await self.reader.readline()
            if len(line) < 4:
                raise SmtpError(f"short reply {line!r}")
            if line[3:4] != b"-":
                if int(line[:3]) != want:
                    raise SmtpError(f"wanted {want}, got {line[:200]!r}")
                return line

    async def send(self, sender: str, rcpt: str, body: bytes, timeout: float = 60.0) -> float:
        """One transaction; returns seconds from end of DATA to the 250.

        ``body`` is CRLF-terminated lines, already dot-stuffed.
        """
        async with asyncio.timeout(timeout):
            w = self.writer
            # Not pipelined (aiosmtpd does not advertise PIPELINING): one reply each.
            w.write(f"MAIL FROM:<{sender}>\r\n".encode())
            await self._reply(250)
            w.write(f"RCPT TO:<{rcpt}>\r\n".encode())
            await self._reply(250)
            w.write(b"DATA\r\n")
            await self._reply(354)
            w.write(body)
            await w.drain()
            w.write(b".\r\n")
            await w.drain()
            t0 = time.perf_counter()
            await self._reply(250)
            return time.perf_counter() - t0

    async def close(self) -> None:
        try:
            async with asyncio.timeout(5):
                self.writer.write(b"QUIT\r\n")
                await self.reader.readline()
        except (OSError, TimeoutError, SmtpError):
            pass
        self.writer.close()


def make_body(size: int, n: int = 0) -> bytes:
    """A plain message of about ``size`` octets (headers + 76-column lines)."""
    head = (f"From: bench@example.net\r\nTo: alice@example.test\r\nSubject: bench {n}\r\n"
            f"Message-ID: <{n}.{time.time_ns()}@bench>\r\n\r\n").encode()
    line = b"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789ab\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def latency_run(host: str, port: int, sessions: int, per_session: int,
                      size: int, rcpt: str = "alice@example.test") -> list[float]:
    """``sessions`` connections each sending ``per_session`` messages; the latencies."""
    out: list[float] = []

    async def one(k: int) -> None:
        s = await Sender.connect(host, port)
        try:
            for i in range(per_session):
                out.append(await s.send("bench@example.net", rcpt, make_body(size, k * 10**6 + i)))
        finally:
            await s.close()

    await asyncio.gather(*(one(k) for k in range(sessions)))
    return out
