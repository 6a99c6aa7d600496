"""Regression tests for review findings on SMTP ingress.

* A client that never reads its replies must not keep its connection slot
  (the write side is bounded by ``smtp_idle_timeout``, a close by an abort).
* Control characters in MAIL/RCPT paths are refused (RFC 5321 §4.1.2): they
  would otherwise reach the stored ``Return-Path:`` field (header injection).
* Relaying is refused at RCPT with 550 5.7.1 (RFC 5321 §4.3.2).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from support.wire import RawSmtp

ALICE = "alice@example.test"


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


@pytest.mark.parametrize("ctl", [b"\r", b"\x00", b"\x01", b"\t", b"\x1b", b"\x7f"])
def test_control_character_in_reverse_path_is_refused(server: Any, ctl: bytes) -> None:
    c = RawSmtp(server.port("smtp"))
    try:
        c.reply()
        assert c.cmd(b"EHLO client.test")[0].startswith(b"250")
        path = b'<"a' + ctl + b'X-Injected: yes"@evil.example>'
        assert c.cmd(b"MAIL FROM:" + path)[0].startswith(b"501 5.1.7 ")
        # No transaction was started: RCPT needs a MAIL first.
        assert c.cmd(b"RCPT TO:<" + ALICE.encode() + b">")[0].startswith(b"503")
        assert c.cmd(b"MAIL FROM:<sender@else.test>")[0].startswith(b"250")
    finally:
        c.close()


@pytest.mark.parametrize("ctl", [b"\r", b"\x00", b"\x08", b"\x7f"])
def test_control_character_in_forward_path_is_refused(server: Any, ctl: bytes) -> None:
    c = RawSmtp(server.port("smtp"))
    try:
        c.reply()
        c.cmd(b"EHLO client.test")
        assert c.cmd(b"MAIL FROM:<sender@else.test>")[0].startswith(b"250")
        rcpt = b'RCPT TO:<"alice' + ctl + b'"@example.test>'
        assert c.cmd(rcpt)[0].startswith(b"501 5.1.3 ")
        assert c.cmd(b"DATA")[0].startswith(b"503")  # no recipient was accepted
    finally:
        c.close()


def test_injection_repro_stores_nothing(server: Any) -> None:
    """The reviewer's repro: the message must not be stored with a forged field."""
    c = RawSmtp(server.port("smtp"))
    try:
        c.reply()
        c.cmd(b"EHLO x")
        assert c.cmd(b'MAIL FROM:<"a\rX-Injected: yes"@evil.example>')[0].startswith(b"501")
        c.cmd(b"RCPT TO:<alice@example.test>")
        c.cmd(b"DATA")
        c.sock.sendall(b"Subject: hi\r\n\r\nbody\r\n.\r\n")
        c.cmd(b"QUIT")
    finally:
        c.close()
    mb = server.call(server.store.get_mailbox, ALICE, "INBOX")
    for rec in server.call(server.store.list_messages, mb.id):
        assert b"X-Injected" not in rec.prefix


def test_relay_is_refused_with_550_5_7_1(server: Any) -> None:
    c = RawSmtp(server.port("smtp"))
    try:
        c.reply()
        c.cmd(b"EHLO client.test")
        c.cmd(b"MAIL FROM:<sender@else.test>")
        assert c.cmd(b"RCPT TO:<someone@elsewhere.test>") == [b"550 5.7.1 Relay access denied"]
    finally:
        c.close()


def test_too_many_unknown_commands_closes_with_421(server: Any) -> None:
    """aiosmtpd hangs up after five unknown commands; the closing reply is a 421
    (RFC 5321 §3.8), so a pipelining client knows the channel is gone."""
    c = RawSmtp(server.port("smtp"))
    try:
        c.reply()
        c.cmd(b"EHLO client.test")
        c.sock.sendall(b"\x00EHLO x\r\n" * 5 + b"NOOP\r\n")
        replies = [c.reply() for _ in range(5)]
        assert all(r[0].startswith(b"500 5.5.2 ") for r in replies[:4])
        assert replies[4] == [b"421 4.7.0 Too many unrecognized commands, closing connection"]
        assert c.reply() == []  # closed; the pipelined NOOP is not answered
    finally:
        c.close()
