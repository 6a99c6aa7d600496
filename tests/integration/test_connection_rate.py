"""New connections per minute per IP, counted once for every worker (issue 11 §3).

Two workers, ``connections_per_minute_per_ip = 4`` and loopback not trusted:
whichever worker the kernel hands each connection to, no more than 4 are
greeted in the minute; the rest get ``421 4.7.0`` (SMTP) or ``* BYE`` (IMAP).
"""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.api import ApiClient
from support.daemon import Daemon, add_user, run_cli

from mailserver.counters import ConnectionRate, ConnectionSlots

CONFIG = """\
hostname = "mx.example.test"
data_dir = "data"
domains = ["example.test"]
workers = 2

[log]
format = "json"

[limits]
shutdown_grace = 2.0
connections_per_minute_per_ip = 4
connections_per_minute_per_network = 0
trusted_networks = []

[listeners.smtp]
protocol = "smtp"
address = "127.0.0.1"
port = 0

[listeners.imap]
protocol = "imap"
address = "127.0.0.1"
port = 0
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    conf = tmp_path / "mailserver.toml"
    conf.write_text(CONFIG, encoding="utf-8")
    d = Daemon("-c", conf, timeout=45.0)
    try:
        d.wait_for("server_ready")
        yield d
    finally:
        d.kill()


def first_line(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=45.0) as s:
        return s.makefile("rb").readline()


def test_the_rate_holds_across_two_workers(daemon: Daemon) -> None:
    lines = [first_line(daemon.ports["smtp"]) for _ in range(8)]
    greeted = [x for x in lines if x.startswith(b"220 ")]
    refused = [x for x in lines if x.startswith(b"421 4.7.0")]
    assert 1 <= len(greeted) <= 4 and len(greeted) + len(refused) == 8
    # The same client's IMAP connections count in the same per-IP rate.
    assert first_line(daemon.ports["imap"]).startswith(b"* BYE")


def test_rate_in_the_slot_table_and_trusted_networks() -> None:
    now = [0.0]
    slots = ConnectionSlots(ConnectionRate(4, 6, clock=lambda: now[0], trusted=("10.0.0.0/8",)))
    assert slots.acquire_many("s", "192.0.2.1", 100, 100, 4) == 4  # the slot + 3 spares
    assert slots.rate_credit("192.0.2.1", 8) == 1  # only up to half the rate: 1 + 1 of 4
    assert slots.acquire("s", "192.0.2.1", 100, 100)
    assert slots.acquire("s", "192.0.2.1", 100, 100)
    assert not slots.acquire("s", "192.0.2.1", 100, 100)  # 4 this minute
    assert slots.acquire("s", "192.0.2.2", 100, 100)  # same /24: 5 of 6
    assert slots.acquire("s", "192.0.2.3", 100, 100)
    assert not slots.acquire("s", "192.0.2.4", 100, 100)  # the /24 is at 6
    assert all(slots.acquire("s", "10.1.2.3", 100, 100) for _ in range(10))  # trusted
    assert slots.rate_credit("10.1.2.3", 8) == -1
    now[0] = 200.0
    assert slots.acquire("s", "192.0.2.1", 100, 100)  # a new minute


RATE_CONFIG = CONFIG.replace("connections_per_minute_per_ip = 4", """\
connections_per_minute_per_ip = 0
messages_per_minute_per_ip = 3
recipients_per_minute_per_ip = 4""") + """
[listeners.http]
protocol = "http"
address = "127.0.0.1"
port = 0
"""


@pytest.fixture
def rate_conf(tmp_path: Path) -> Path:
    return tmp_path / "mailserver.toml"


@pytest.fixture(params=[2, 1], ids=["workers=2", "workers=1"])
def rate_daemon(rate_conf: Path, request: pytest.FixtureRequest) -> Iterator[Daemon]:
    """A daemon with the rate limits; with workers = 1 its own process answers
    ``mailserver limits`` (``counters/admin_socket.py``)."""
    conf = rate_conf
    conf.write_text(RATE_CONFIG.replace("workers = 2", f"workers = {request.param}"),
                    encoding="utf-8")
    add_user(conf, "alice@example.test", "correct horse battery")
    d = Daemon("-c", conf, timeout=45.0)
    try:
        d.wait_for("server_ready")
        yield d
    finally:
        d.kill()


def test_message_and_recipient_rates_hold_across_two_workers(rate_daemon: Daemon) -> None:
    """One connection per message, so the kernel spreads them over both workers."""
    port = rate_daemon.ports["smtp"]
    mail_codes, rcpt_replies = [], []
    for _ in range(5):
        with smtplib.SMTP("127.0.0.1", port, timeout=45.0) as c:
            c.ehlo("client.example")
            code, _ = c.mail("bob@remote.test")
            mail_codes.append(code)
            if code == 250:
                for _ in range(2):
                    rcpt_replies.append(c.rcpt("alice@example.test"))
    assert mail_codes[:3] == [250, 250, 250] and mail_codes[3:] == [451, 451]
    codes = [code for code, _ in rcpt_replies]
    assert codes == [250, 250, 250, 250, 452, 452]
    assert rcpt_replies[-1][1].startswith(b"4.5.3")


def test_day_windows_survive_a_restart(tmp_path: Path) -> None:
    conf = tmp_path / "mailserver.toml"
    conf.write_text(RATE_CONFIG.replace("messages_per_minute_per_ip = 3",
                                        "messages_per_day_per_ip = 2"), encoding="utf-8")
    codes = []
    for _ in range(2):  # two daemon lifetimes, two messages each
        d = Daemon("-c", conf, timeout=45.0)
        try:
            d.wait_for("server_ready")
            for _ in range(2):
                with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=45.0) as c:
                    c.ehlo("client.example")
                    codes.append(c.mail("bob@remote.test")[0])
            assert d.stop() == 0
        finally:
            d.kill()
    assert codes == [250, 250, 451, 451]
    assert (tmp_path / "data" / "state" / "limits.json").exists()


def test_limits_show_and_reset_on_the_running_daemon(rate_daemon: Daemon,
                                                      rate_conf: Path) -> None:
    port = rate_daemon.ports["smtp"]

    def mail() -> int:
        with smtplib.SMTP("127.0.0.1", port, timeout=45.0) as c:
            c.ehlo("client.example")
            return c.mail("bob@remote.test")[0]

    assert [mail() for _ in range(4)] == [250, 250, 250, 451]
    shown = run_cli("-c", rate_conf, "limits", "show", "127.0.0.1")
    assert shown.returncode == 0, shown.stderr
    assert "msg" in shown.stdout and "127.0.0.1" in shown.stdout and " 3" in shown.stdout
    # The API answers the same from whichever worker serves it.
    made = run_cli("token", "create", "ops", "-c", rate_conf)
    assert made.returncode == 0, made.stderr
    api = ApiClient(rate_daemon.ports["http"], made.stdout.strip())
    counters = api.all_items("/api/v1/limits?name=127.0.0.1")
    [msg] = [c for c in counters if c["window"] == "minute" and c["kind"] == "msg"]
    assert 0 < msg["count"] <= 3  # a sliding estimate: less once a minute boundary passed
    assert all(c["name"] == "127.0.0.1" for c in counters)
    assert api.get("/api/v1/limits?name=a%20b").status == 422
    reset = run_cli("-c", rate_conf, "limits", "reset", "127.0.0.1")
    # the minute and the day window of its messages
    assert reset.returncode == 0 and "reset 2 counter" in reset.stdout, reset.stdout
    assert mail() == 250
    again = api.post("/api/v1/limits/reset", {"name": "127.0.0.1"})
    assert again.status == 200 and again.body == {"name": "127.0.0.1", "reset": 2}
    assert api.all_items("/api/v1/limits?name=127.0.0.1") == []


def test_limits_show_says_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    conf = tmp_path / "mailserver.toml"
    conf.write_text(RATE_CONFIG, encoding="utf-8")
    shown = run_cli("-c", conf, "limits", "show")
    assert shown.returncode == 1 and "not running" in shown.stderr
