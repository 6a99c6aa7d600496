"""An SMTP client that never reads its replies must not keep its connection slot
(the write side is bounded by ``smtp_idle_timeout``, a close by an abort).

The IMAP side of the same rule is in test_imap_non_reading_client.py.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from support.wire import RawSmtp


def _flood_without_reading(port: int) -> socket.socket:
    """Pipeline megabytes of HELP on a socket with a tiny receive buffer, never reading:
    the server's replies fill our window and its send buffer, then its writes stall."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.settimeout(30)
    assert s.recv(100).startswith(b"220 ")  # admitted: the server counts it now
    s.setblocking(False)
    chunk = b"HELP\r\n" * 1000
    sent = 0
    try:
        while sent < 8 << 20:
            sent += s.send(chunk)
    except BlockingIOError:
        pass  # both directions are full: the server no longer reads us either
    except (ConnectionResetError, BrokenPipeError):
        # On a loaded machine the flood can outlast smtp_idle_timeout: the server
        # has cut the line already, which is what the test waits for anyway.
        pass
    return s


def test_client_that_never_reads_loses_its_slot(server_factory: Any) -> None:
    srv = server_factory(smtp_idle_timeout=1.0, max_connections_per_ip=2)
    port = srv.port("smtp")
    held = [_flood_without_reading(port) for _ in range(2)]
    try:
        listener = srv.app.listeners["smtp"]

        async def all_closed() -> None:
            async with asyncio.timeout(60):
                await asyncio.gather(*(c.wait_closed() for c in listener.connections))

        # Before the fix close() waited forever for the never-read replies to drain.
        srv.run(all_closed(), timeout=90)
        fresh = RawSmtp(port)
        try:
            assert fresh.reply()[0].startswith(b"220 ")
            assert fresh.cmd(b"QUIT")[0].startswith(b"221")
        finally:
            fresh.close()
    finally:
        for s in held:
            s.close()


def test_quit_after_unread_replies_does_not_hold_the_slot(server_factory: Any) -> None:
    """A pipelined QUIT behind megabytes of replies the peer never reads: the
    connection still goes (write timeout, or the close's abort), and the slot with it."""
    srv = server_factory(smtp_idle_timeout=1.0, max_connections_per_ip=1)
    port = srv.port("smtp")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.settimeout(30)
    try:
        assert s.recv(100).startswith(b"220 ")  # admitted: the server counts it now
        s.sendall(b"EHLO x\r\n" + b"HELP\r\n" * 100_000 + b"QUIT\r\n")
        listener = srv.app.listeners["smtp"]

        async def closed() -> None:
            async with asyncio.timeout(60):
                await asyncio.gather(*(c.wait_closed() for c in listener.connections))

        srv.run(closed(), timeout=90)
        fresh = RawSmtp(port)
        try:
            assert fresh.reply()[0].startswith(b"220 ")
        finally:
            fresh.close()
    finally:
        s.close()
