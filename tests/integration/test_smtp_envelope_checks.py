"""MAIL and RCPT paths the server refuses (the SMTP envelope, RFC 5321 §4.1.2, §4.3.2).

* Control characters in MAIL/RCPT paths are refused: they would otherwise
  reach the stored ``Return-Path:`` field (header injection).
* Relaying is refused at RCPT with 550 5.7.1.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.wire import RawSmtp

ALICE = "alice@example.test"


@pytest.mark.parametrize("ctl", [b"\r", b"\x00", b"\x01", b"\t", b"\x1b", b"\x7f"])
def test_control_character_in_reverse_path_is_refused(server: Any, ctl: bytes) -> None:
    c = RawSmtp(server.port("smtp"))
    try:
        c.reply()
        assert c.cmd(b"EHLO client.test")[0].startswith(b"250")
        path = b'<"a' + ctl + b'X-Injected: yes"@evil.example>'
        # A CR is refused with the whole line (RFC 5321 §2.3.8), the rest by the path grammar.
        expected = b"500 5.5.2 " if ctl == b"\r" else b"501 5.1.7 "
        assert c.cmd(b"MAIL FROM:" + path)[0].startswith(expected)
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
        expected = b"500 5.5.2 " if ctl == b"\r" else b"501 5.1.3 "
        assert c.cmd(rcpt)[0].startswith(expected)
        assert c.cmd(b"DATA")[0].startswith(b"503")  # no recipient was accepted
    finally:
        c.close()


def test_injection_repro_stores_nothing(server: Any) -> None:
    """The reviewer's repro: the message must not be stored with a forged field."""
    c = RawSmtp(server.port("smtp"))
    try:
        c.reply()
        c.cmd(b"EHLO x")
        # Refused (a bare CR in a command line: RFC 5321 §2.3.8, 500 5.5.2).
        assert c.cmd(b'MAIL FROM:<"a\rX-Injected: yes"@evil.example>')[0][:1] == b"5"
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
