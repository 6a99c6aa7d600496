"""The ``http`` listener in process (``workers = 1``): ``/metrics`` and problem
details.  The multi-process view is tested with a real daemon in
``test_http_workers.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import imaplib
import json
import re
import smtplib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.metrics import Samples, samples, value
from support.server import USERS, ServerThread, make_config, running_server
from support.wire import client_tls_context

from mailserver.config import Listener

ALERT_RULES = Path(__file__).resolve().parents[2] / "conf" / "prometheus-alerts.yml"
MESSAGE = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """One server for the module (tests look at differences between scrapes)."""
    config = make_config(tmp_path_factory.mktemp("http") / "data")
    http = Listener(name="http", protocol="http")
    https = Listener(name="https", protocol="http", tls="implicit")
    config = dataclasses.replace(config, listeners=(*config.listeners, http, https))
    with running_server(config) as srv:
        yield srv


def get(srv: ServerThread, path: str, method: str = "GET") -> tuple[int, str, bytes, dict[str, str]]:
    """(status, content type, body, headers) of ``method path`` on the http listener."""
    url = f"http://127.0.0.1:{srv.port('http')}{path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as r:
            return r.status, r.headers["Content-Type"], r.read(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read(), dict(err.headers)


def delta_of(before: Samples, after: Samples) -> Samples:
    return {key: v - before.get(key, 0.0) for key, v in after.items()}


def test_metrics_count_mail_and_logins(web: ServerThread) -> None:
    # The instruments belong to the process: other tests' servers counted too.
    before = samples(get(web, "/metrics")[2])
    with smtplib.SMTP("127.0.0.1", web.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("bob@example.test", ["alice@example.test"], MESSAGE)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("bob@example.test", ["nobody@example.test"], MESSAGE)
    imap = imaplib.IMAP4("127.0.0.1", web.port("imap"), timeout=30)
    imap.starttls()
    with pytest.raises(imaplib.IMAP4.error):
        imap.login("alice@example.test", "wrong")
    imap.login("alice@example.test", USERS["alice@example.test"])
    imap.select("INBOX")
    imap.logout()

    status, ctype, body, _ = get(web, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    after = samples(body)
    found = delta_of(before, after)
    assert value(found, "mailserver_smtp_transactions_total", listener="smtp",
                 reply_class="2xx", enhanced_code="2.0.0") == 1
    assert value(found, "mailserver_smtp_data_seconds_count", listener="smtp") == 1
    assert value(found, "mailserver_smtp_check_verdicts_total", listener="smtp", phase="rcpt",
                 verdict="reject") == 1
    assert value(found, "mailserver_smtp_check_verdicts_total", listener="smtp", phase="rcpt",
                 verdict="accept") >= 1  # tallies flushed before the scrape
    assert value(found, "mailserver_local_deliveries_total") == 1
    assert value(found, "mailserver_auth_failures_total", protocol="imap") == 1
    assert value(found, "mailserver_imap_command_seconds_count", command="LOGIN") == 2
    assert value(found, "mailserver_imap_command_seconds_count", command="SELECT") == 1
    assert value(found, "mailserver_connections_total", listener="smtp",
                 outcome="accepted") == 1
    assert value(found, "mailserver_store_commit_seconds_count") >= 1
    assert value(found, "mailserver_store_commit_batch_requests_count") >= 1
    assert value(after, "mailserver_queue_messages") >= 0
    assert 0 < value(after, "mailserver_store_map_fill_ratio") < 1
    assert 0 < value(after, "mailserver_store_capacity_bytes") <= value(
        after, "mailserver_store_map_size_bytes")
    assert value(after, "mailserver_tls_certificate_expiry_timestamp_seconds") > 0
    assert value(after, "mailserver_data_dir_free_bytes") > 0
    assert value(after, "mailserver_event_loop_lag_seconds_count") >= 1  # probed every 0.1 s


def test_unknown_path_is_a_problem(web: ServerThread) -> None:
    status, ctype, body, _ = get(web, "/nope")
    assert status == 404 and ctype == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 404 and problem["type"] == "about:blank"
    assert problem["title"] == "Not Found"


def test_wrong_method_is_a_problem_with_allow(web: ServerThread) -> None:
    status, ctype, body, headers = get(web, "/metrics", method="POST")
    assert status == 405 and ctype == "application/problem+json"
    assert json.loads(body)["title"] == "Method Not Allowed"
    assert "GET" in headers["Allow"]


def test_alert_rules_name_only_exposed_metrics(web: ServerThread) -> None:
    """Every ``mailserver_*`` series the shipped alert rules use is in ``/metrics``
    (a renamed metric must not leave an alert that never fires)."""
    names = set()
    for family in text_string_to_metric_families(get(web, "/metrics")[2].decode()):
        suffixes = {"counter": ("_total",), "histogram": ("_count", "_sum", "_bucket")}
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    used = set(re.findall(r"\bmailserver_[a-z_]+", ALERT_RULES.read_text()))
    assert used and used <= names, sorted(used - names)


def test_https_listener(web: ServerThread) -> None:
    url = f"https://127.0.0.1:{web.port('https')}/metrics"
    with urllib.request.urlopen(url, timeout=30, context=client_tls_context()) as response:
        assert response.status == 200
        assert value(samples(response.read()), "mailserver_store_map_size_bytes") > 0


def test_queue_and_outbound_attempts(web: ServerThread) -> None:
    """A message for a remote domain is tried (DNS on a dead loopback port:
    deferred), stays queued, and shows in the queue gauges."""
    before = samples(get(web, "/metrics")[2])
    web.run(web.app.queue.enqueue("alice@example.test", ["carol@dest.test"], MESSAGE))
    web.run(asyncio.wait_for(web.app.queue.wait_rounds(1), 30))
    after = samples(get(web, "/metrics")[2])
    assert value(delta_of(before, after), "mailserver_queue_messages") == 1
    assert value(after, "mailserver_queue_oldest_message_age_seconds") >= 0
    delta = delta_of(before, after)
    assert value(delta, "mailserver_outbound_attempts_total", result="temporary") == 1
    assert value(delta, "mailserver_outbound_attempt_seconds_count") == 1
