"""``/metrics`` of a real daemon with ``workers = 2``: one view across the workers.

Mail is sent and logins made on each worker (told apart by their log lines,
as in ``test_workers.py``); whichever worker the kernel hands a scrape to,
the figures are the sum of both, the supervisor's group commits included.
A worker killed and restarted takes its counts with it into the sum (its
value files stay; its live gauges are dropped by the supervisor).
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from support.daemon import Daemon, add_user
from support.metrics import Samples, samples, value
from support.wire import RawImap

TIMEOUT = 45.0
PASSWORD = "correct horse battery"

CONFIG = """\
hostname = "mx.example.test"
data_dir = "data"
domains = ["example.test"]
workers = 2

[log]
format = "json"

[limits]
shutdown_grace = 5.0

[listeners.smtp]
protocol = "smtp"
port = 0

[listeners.imap]
protocol = "imap"
port = 0

[listeners.http]
protocol = "http"
port = 0
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    conf = tmp_path / "mailserver.toml"
    conf.write_text(CONFIG, encoding="utf-8")
    add_user(conf, "alice@example.test", PASSWORD)
    return conf


@pytest.fixture
def daemon(conf: Path) -> Iterator[Daemon]:
    d = Daemon("-c", conf, timeout=TIMEOUT)
    try:
        d.wait_for("server_ready")
        yield d
    finally:
        d.kill()


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


def connect_on(d: Daemon, worker: int, connect: Callable[[], C], event: str) -> C:
    """A connection served by ``worker`` (see ``test_workers.connect_on``)."""
    for _ in range(100):
        client = connect()
        landed = d.wait_for(event)
        if landed["worker"] == worker:
            return client
        client.close()
        d.wait_for(event.replace("connect", "disconnect"), conn_id=landed["conn_id"])
    pytest.fail(f"no {event} landed on worker {worker}")


def scrape(d: Daemon) -> Samples:
    url = f"http://127.0.0.1:{d.ports['http']}/metrics"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        assert response.status == 200
        return samples(response.read())


def test_metrics_merge_both_workers(daemon: Daemon, conf: Path) -> None:
    for worker in (0, 1):
        smtp = connect_on(daemon, worker, lambda: smtplib.SMTP(
            "127.0.0.1", daemon.ports["smtp"], timeout=TIMEOUT), "smtp_connect")
        body = b"From: bob@remote.test\r\nTo: alice@example.test\r\nSubject: m\r\n\r\nhi\r\n"
        assert smtp.sendmail("bob@remote.test", ["alice@example.test"], body) == {}
        smtp.quit()
        imap = connect_on(daemon, worker, lambda: RawImap(daemon.ports["imap"], TIMEOUT),
                          "imap_connect")
        imap.ok("a1", f'LOGIN alice@example.test "{PASSWORD}"')
        imap.ok("a2", "LOGOUT")
        imap.close()

    def check(found: Samples) -> None:
        assert value(found, "mailserver_smtp_transactions_total", listener="smtp",
                     reply_class="2xx", enhanced_code="2.0.0") == 2
        assert value(found, "mailserver_smtp_data_seconds_count", listener="smtp") == 2
        assert value(found, "mailserver_local_deliveries_total") == 2
        assert value(found, "mailserver_imap_command_seconds_count", command="LOGIN") == 2
        assert value(found, "mailserver_connections_total", listener="smtp",
                     outcome="accepted") >= 2
        # The group commit runs in the supervisor: its files are in the view too.
        assert value(found, "mailserver_store_commit_batch_requests_sum") >= 2
        assert value(found, "mailserver_queue_messages") == 0

    # Fresh connections: the kernel spreads them over both workers.
    for _ in range(4):
        check(scrape(daemon))

    # Errors are problem details (RFC 9457) from every worker too.
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{daemon.ports['http']}/nope", timeout=TIMEOUT)
    assert err.value.code == 404
    assert err.value.headers["Content-Type"] == "application/problem+json"
    assert json.loads(err.value.read())["status"] == 404

    pids = {e["worker"]: e["worker_pid"] for e in daemon.logged("worker_ready")}
    os.kill(pids[1], signal.SIGKILL)
    daemon.wait_for("worker_exited", worker=1)
    daemon.wait_for("worker_ready", worker=1)
    for _ in range(2):
        check(scrape(daemon))
    assert daemon.stop() == 0

    # A new run starts from zero: the directory of values is emptied at start.
    again = Daemon("-c", conf, timeout=TIMEOUT)
    try:
        again.wait_for("server_ready")
        found = scrape(again)
        assert value(found, "mailserver_smtp_transactions_total") == 0
        assert value(found, "mailserver_local_deliveries_total") == 0
        assert value(found, "mailserver_open_connections") == 0
    finally:
        again.kill()
