"""An IMAP client that never reads cannot keep its connection (mailserver/imap/connection.py;
the SMTP side of the same rule is in test_smtp_non_reading_client.py).

A graceful close waits until the peer has read what is buffered; a client
that stops reading never does.  The server closes gracefully but aborts the
transport when it is not gone within its write bound (at most the
autologout time, RFC 3501 §5.4), and aborts at once when the shutdown grace
is over.  The tests fill the send buffer with a big FETCH and never read
again, then wait (bounded by a generous failure timeout, not a timing
assertion) for the server side's ``connection_lost``.
"""

from __future__ import annotations

import asyncio
import gc
import imaplib
import socket
import weakref
from typing import Any

from support.server import ServerThread

from mailserver.protocol.mime import analyze

ALICE = ("alice@example.test", "alice-secret")
#: Far more than the socket buffers of both ends and the transport's high water.
BIG = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 8000
#: Longer than any bound under test, much shorter than the old 120 s write wait.
GONE_WITHIN = 30.0


def _put_big(srv: ServerThread) -> None:
    srv.run(srv.store.append(ALICE[0], "INBOX", BIG, analyze(BIG).to_bytes(), internal_date=1))


def _read_until(sock: socket.socket, tag: bytes) -> bytes:
    data = b""
    while not (data.startswith(tag + b" ") or b"\r\n" + tag + b" " in data):
        chunk = sock.recv(65536)
        assert chunk, data[-200:]
        data += chunk
    return data


def _non_reading_client(srv: ServerThread) -> socket.socket:
    """Logged in, INBOX selected, a big FETCH sent; from then on it never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", srv.port("imap")))
    assert sock.recv(4096).startswith(b"* OK")
    sock.sendall(b'a LOGIN "%s" "%s"\r\n' % (ALICE[0].encode(), ALICE[1].encode()))
    assert b"a OK" in _read_until(sock, b"a")
    sock.sendall(b"b SELECT INBOX\r\n")
    assert b"b OK" in _read_until(sock, b"b")
    sock.sendall(b"c FETCH 1 BODY.PEEK[]\r\n")
    return sock


def _the_connection(srv: ServerThread) -> Any:
    conns = srv.call(lambda: [s.conn for s in srv.app.listeners["imap"].connections
                              if s.conn is not None])
    assert len(conns) == 1
    return conns[0]


def _wait_gone(srv: ServerThread, conn: Any) -> None:
    srv.run(asyncio.wait_for(conn.stream.wait_lost(), GONE_WITHIN))


def test_logout_of_a_non_reading_client_ends_its_connection(server_factory: Any) -> None:
    srv = server_factory(imap_idle_timeout=1.0)  # write/close bound: 1 s
    _put_big(srv)
    sock = _non_reading_client(srv)
    try:
        sock.sendall(b"d LOGOUT\r\n")
        conn = _the_connection(srv)
        assert conn.close_bound == 1.0
        _wait_gone(srv, conn)
    finally:
        sock.close()


def test_shutdown_aborts_a_non_reading_client(server_factory: Any) -> None:
    srv = server_factory()  # default autologout: only the shutdown can end it soon
    _put_big(srv)
    sock = _non_reading_client(srv)
    try:
        conn = _the_connection(srv)
        assert conn.close_bound > GONE_WITHIN
        srv.run(srv.app.listeners["imap"].shutdown(0.5))
        _wait_gone(srv, conn)
    finally:
        sock.close()


def test_a_finished_connection_is_freed_by_reference_counting(server_factory: Any) -> None:
    """After LOGOUT nothing of the connection is left for the cyclic collector:
    with the collector off, the connection object is gone once it closed."""
    srv = server_factory()
    refs: list[weakref.ref[Any]] = []
    gc.collect()
    gc.disable()
    try:
        client = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
        client.login(*ALICE)
        client.select("INBOX")
        client.noop()
        refs.append(weakref.ref(_the_connection(srv)))
        client.logout()
        listener = srv.app.listeners["imap"]
        srv.run(_until(lambda: not listener.connections))
        srv.run(asyncio.sleep(0.05))  # the transport's connection_lost
        alive = refs[0]() is not None
    finally:
        gc.enable()
    assert not alive


async def _until(done: Any) -> None:
    async with asyncio.timeout(GONE_WITHIN):
        while not done():
            await asyncio.sleep(0.01)
