"""Failed logins per client IP and per account (issue #11 §3,
``counters/logins.py``): past the limit, logins are refused without a
password check, SMTP AUTH with ``421 4.7.0`` and IMAP with ``NO
[UNAVAILABLE]``; the counts are shared by both protocols and by both
workers of the daemon (each login on a new connection, so the kernel spreads
them); trusted networks are never blocked."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import Daemon, add_user
from support.wire import client_tls_context

CONFIG = """\
hostname = "mx.example.test"
data_dir = "data"
domains = ["example.test"]
workers = 2

[log]
format = "json"

[limits]
shutdown_grace = 2.0
auth_failure_delay = 0.0
max_auth_failures = 10
trusted_networks = {trusted}
auth_failures_per_minute_per_ip = {per_ip}
auth_failures_per_minute_per_account = {per_account}

[listeners.submission]
protocol = "submission"
address = "127.0.0.1"
port = 0
tls = "starttls"

[listeners.imap]
protocol = "imap"
address = "127.0.0.1"
port = 0
"""
ALICE, BOB = ("alice@example.test", "alice-secret-1"), ("bob@example.test", "bob-secret-12")


def daemon_for(tmp_path: Path, *, per_ip: int, per_account: int,
               trusted: str = "[]") -> Daemon:
    conf = tmp_path / "mailserver.toml"
    conf.write_text(CONFIG.format(per_ip=per_ip, per_account=per_account, trusted=trusted),
                    encoding="utf-8")
    for user, password in (ALICE, BOB):
        add_user(conf, user, password)
    d = Daemon("-c", conf, timeout=45.0)
    d.wait_for("server_ready")
    return d


@pytest.fixture
def cleanup() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


def imap_login(d: Daemon, user: str, password: str) -> str:
    """``OK``, ``AUTHENTICATIONFAILED`` or ``UNAVAILABLE``."""
    with imaplib.IMAP4("127.0.0.1", d.ports["imap"], timeout=30) as c:
        try:
            c.login(user, password)
        except imaplib.IMAP4.error as exc:
            text = str(exc)
            return "UNAVAILABLE" if "[UNAVAILABLE]" in text else "AUTHENTICATIONFAILED"
        c.logout()
        return "OK"


def smtp_auth(d: Daemon, user: str, password: str) -> int:
    with smtplib.SMTP("127.0.0.1", d.ports["submission"], timeout=30) as c:
        c.starttls(context=client_tls_context())
        c.ehlo("laptop.test")
        c.user, c.password = user, password
        try:  # one mechanism: login() would try the next after a 535
            c.auth("PLAIN", c.auth_plain)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code
        except smtplib.SMTPServerDisconnected:
            return 421
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code
        return 235


def test_ip_limit_blocks_both_protocols_across_workers(tmp_path: Path,
                                                       cleanup: list[Daemon]) -> None:
    d = daemon_for(tmp_path, per_ip=3, per_account=0)
    cleanup.append(d)
    assert imap_login(d, BOB[0], "wrong-1") == "AUTHENTICATIONFAILED"
    assert smtp_auth(d, BOB[0], "wrong-2") == 535
    assert imap_login(d, ALICE[0], "wrong-3") == "AUTHENTICATIONFAILED"
    # Three failures from this IP, whichever worker and protocol took them:
    # even the right password is refused now, without a check.
    assert imap_login(d, ALICE[0], ALICE[1]) == "UNAVAILABLE"
    assert smtp_auth(d, ALICE[0], ALICE[1]) == 421
    d.wait_for("imap_login_blocked")
    d.wait_for("auth_blocked")


def test_account_limit_blocks_the_account_only(tmp_path: Path,
                                               cleanup: list[Daemon]) -> None:
    d = daemon_for(tmp_path, per_ip=0, per_account=2)
    cleanup.append(d)
    assert smtp_auth(d, ALICE[0], "guess-1") == 535
    assert imap_login(d, ALICE[0].upper(), "guess-2") == "AUTHENTICATIONFAILED"
    assert imap_login(d, ALICE[0], ALICE[1]) == "UNAVAILABLE"
    assert smtp_auth(d, ALICE[0], ALICE[1]) == 421
    assert imap_login(d, BOB[0], BOB[1]) == "OK"  # another account logs in


def test_trusted_networks_are_never_blocked(tmp_path: Path, cleanup: list[Daemon]) -> None:
    d = daemon_for(tmp_path, per_ip=1, per_account=1, trusted='["127.0.0.0/8"]')
    cleanup.append(d)
    for n in range(3):
        assert imap_login(d, ALICE[0], f"wrong-{n}") == "AUTHENTICATIONFAILED"
    assert imap_login(d, ALICE[0], ALICE[1]) == "OK"
