"""Mail-flow analytics through the admin API (issue 14 §4): events, stats and
the SSE stream, on a real daemon with ``workers = 1`` and ``workers = 2``
(the same answers from whichever worker serves the request), and the
windows kept across a restart."""

from __future__ import annotations

import http.client
import json
import smtplib
from pathlib import Path
from typing import Any

import pytest
from support.api import ApiClient
from support.daemon import Daemon, run_cli

CONFIG = """\
hostname = "mx.example.test"
data_dir = "data"
domains = ["example.test"]
workers = {workers}

[log]
format = "json"

[listeners.smtp]
protocol = "smtp"
port = 0

[listeners.http]
protocol = "http"
port = 0
"""


class Stream:
    """An SSE client over http.client: ``next_event`` reads one event."""

    def __init__(self, port: int, token: str, query: str = "",
                 last_id: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        headers = {"Authorization": f"Bearer {token}"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        self.conn.request("GET", "/api/v1/events/stream" + query, headers=headers)
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.headers["Content-Type"].startswith("text/event-stream")

    def next_event(self) -> dict[str, Any]:
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline().decode().rstrip("\n")
            if not line:
                if "data" in fields:
                    event: dict[str, Any] = json.loads(fields["data"])
                    assert str(event["id"]) == fields["id"]
                    assert event["kind"] == fields["event"]
                    return event
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value

    def close(self) -> None:
        self.conn.close()


def _send(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("client.test")
        s.sendmail("a@sender.test", ["user@example.test"], b"Subject: hi\r\n\r\nhello\r\n")
        s.mail("a@sender.test")
        code, _ = s.rcpt("nobody@example.test")
        assert code == 550
        s.rset()


def _start(tmp_path: Path, workers: int) -> tuple[Daemon, ApiClient, str]:
    daemon = Daemon("-c", tmp_path / "mailserver.toml", timeout=45.0)
    daemon.wait_for("server_ready")
    token = (tmp_path / "token").read_text().strip()
    return daemon, ApiClient(daemon.ports["http"], token), token


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_events_stats_and_stream(tmp_path: Path, workers: int) -> None:
    conf = tmp_path / "mailserver.toml"
    conf.write_text(CONFIG.format(workers=workers), encoding="utf-8")
    assert run_cli("init", "-c", conf).returncode == 0
    made = run_cli("token", "create", "ops", "-c", conf)
    assert made.returncode == 0, made.stderr
    (tmp_path / "token").write_text(made.stdout)
    daemon, client, token = _start(tmp_path, workers)
    try:
        assert client.post("/api/v1/accounts", {"address": "user@example.test",
                                                "password": "secret-password"}).status == 201
        stream = Stream(daemon.ports["http"], token, "?domain=example.test")
        _send(daemon.ports["smtp"])
        seen = [stream.next_event() for _ in range(3)]
        stream.close()
        assert sorted(e["kind"] for e in seen) == ["delivered", "received", "refused"]
        received = next(e for e in seen if e["kind"] == "received")
        assert received["direction"] == "in" and received["result"] == "ok"
        assert received["code"].startswith("250") and received["latency"] >= 0
        refused = next(e for e in seen if e["kind"] == "refused")
        assert refused["code"].startswith("550") and refused["result"] == "perm"
        delivered = next(e for e in seen if e["kind"] == "delivered")
        assert delivered["account"] == "user@example.test"

        # Resume after the first event: the next ones, nothing before.
        first = min(seen, key=lambda e: e["id"])
        resumed = Stream(daemon.ports["http"], token, "?domain=example.test", str(first["id"]))
        assert resumed.next_event()["id"] == sorted(e["id"] for e in seen)[1]
        resumed.close()

        # Stats: the same from every worker (each request on a new connection).
        answers = [client.get("/api/v1/stats").body for _ in range(6)]
        for body in answers:
            minute = body["windows"]["1m"]
            assert minute["totals"]["received"] == 1, minute
            assert minute["totals"]["refused"] == 1
            assert minute["totals"]["delivered"] == 1
            assert minute["latency"]["data"]["count"] == 1
            assert minute["latency"]["data"]["p99"] is not None
            assert ["received", "in", "example.test", "ok", 1] in minute["by"]
            assert body["windows"]["24h"]["totals"] == minute["totals"]

        # Events: filters and cursor pagination.
        only = client.get("/api/v1/events?kind=received").body["items"]
        assert [e["id"] for e in only] == [received["id"]]
        assert client.get("/api/v1/events?result=perm").body["items"][0]["kind"] == "refused"
        paged = client.all_items("/api/v1/events?limit=1&domain=example.test")
        assert [e["id"] for e in paged] == sorted(e["id"] for e in seen)
        assert client.get("/api/v1/events?until=1").body["items"] == []
        assert client.get("/api/v1/events?kind=nope").status == 400
        if workers == 1:  # mailserver top reads the same API
            top = run_cli("top", "--once", "--url", f"http://127.0.0.1:{daemon.ports['http']}",
                          "--token", token, "-c", conf)
            assert top.returncode == 0, top.stderr
            assert "received" in top.stdout and "example.test" in top.stdout
        assert daemon.stop() == 0

        # A restart keeps the windows (per-minute aggregates) and the raw events.
        daemon, client, token = _start(tmp_path, workers)
        totals = client.get("/api/v1/stats").body["windows"]["24h"]["totals"]
        assert totals["received"] == 1 and totals["refused"] == 1
        after = client.all_items("/api/v1/events?limit=2&domain=example.test")
        assert [e["id"] for e in after] == [e["id"] for e in paged]
        assert daemon.stop() == 0
    finally:
        daemon.kill()
