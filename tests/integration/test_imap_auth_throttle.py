"""IMAP login failures count in the per-IP throttle shared with SMTP AUTH, so a
client that reconnects after ``max_auth_failures`` is still slowed down."""

from __future__ import annotations

import imaplib

import pytest
from support.server import ServerThread


def _fail_login(server: ServerThread) -> None:
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login("alice@example.test", "wrong password")
    finally:
        imap.shutdown()


def test_imap_failures_count_across_connections(server_factory) -> None:
    server = server_factory(auth_failure_delay=0.01)
    throttle = server.app.services.counters.throttle
    assert throttle.failures("127.0.0.1") == 0
    _fail_login(server)
    _fail_login(server)  # a new connection: the count goes on
    assert throttle.failures("127.0.0.1") == 2
    # A right password still works (the delay slows guessing, it does not lock out).
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    assert imap.login("alice@example.test", "alice-secret")[0] == "OK"
    imap.logout()
