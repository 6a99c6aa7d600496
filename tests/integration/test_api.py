"""The admin API (``/api/v1``) on a real server's http listener, through a
real HTTP client; tokens made by the admin service and by the command line."""

from __future__ import annotations

import asyncio
import dataclasses
import imaplib
import os
import re
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from support.api import ApiClient
from support.daemon import Daemon, run_cli
from support.server import ServerThread, make_config, running_server

from mailserver.config import Listener
from mailserver.http import api
from mailserver.http.api.openapi import OPERATIONS

MESSAGE = b"From: alice@example.test\r\nTo: x@dest.test\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(tmp_path_factory.mktemp("api") / "data")
    http = Listener(name="http", protocol="http")
    with running_server(dataclasses.replace(config, listeners=(*config.listeners, http))) as s:
        yield s


def _token(srv: ServerThread, name: str, read_only: bool = False) -> str:
    admin = srv.app.services.admin
    return str(srv.run(admin.create_token(name, read_only=read_only))[1])


@pytest.fixture(scope="module")
def ops(srv: ServerThread) -> ApiClient:
    """A client with a read-write token called "ops"."""
    return ApiClient(srv.port("http"), _token(srv, "ops"))


@pytest.fixture(scope="module")
def viewer(srv: ServerThread) -> ApiClient:
    """A client with a read-only token."""
    return ApiClient(srv.port("http"), _token(srv, "viewer", read_only=True))


# -- tokens, 401 vs 403 ------------------------------------------------------------


def test_no_token_is_401_with_a_bearer_challenge(ops: ApiClient) -> None:
    reply = ops.with_token(None).get("/api/v1/domains")
    assert reply.status == 401 and reply.problem_type == "unauthorized"
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="mailserver"'
    basic = ops.with_token(None).get("/api/v1/domains", headers={"Authorization": "Basic eDp5"})
    assert basic.status == 401


def test_unknown_token_is_401_invalid_token(ops: ApiClient) -> None:
    reply = ops.with_token("msv1_" + "A" * 43).get("/api/v1/domains")
    assert reply.status == 401 and reply.problem_type == "unauthorized"
    assert 'error="invalid_token"' in reply.headers["WWW-Authenticate"]


def test_read_only_token_reads_but_may_not_change(viewer: ApiClient) -> None:
    assert viewer.get("/api/v1/domains").status == 200
    reply = viewer.post("/api/v1/domains", {"name": "ro.test"})
    assert reply.status == 403 and reply.problem_type == "read-only-token"
    assert 'error="insufficient_scope"' in reply.headers["WWW-Authenticate"]
    assert viewer.get("/api/v1/domains/ro.test").status == 404  # nothing was made


def test_revoked_token_is_refused_at_once(srv: ServerThread, ops: ApiClient) -> None:
    client = ops.with_token(_token(srv, "short-lived"))
    assert client.get("/api/v1/accounts").status == 200
    srv.run(srv.app.services.admin.revoke_token("short-lived"))
    assert client.get("/api/v1/accounts").status == 401


def test_cli_tokens_work_on_the_running_server(srv: ServerThread, ops: ApiClient,
                                               tmp_path: Path) -> None:
    """``mailserver token create`` in another process: the daemon takes the
    token at its next request; ``token list`` never shows a value;
    ``user list`` gives what the API lists (one service behind both)."""
    data = ["--data-dir", str(srv.config.data_dir)]
    made = run_cli("token", "create", "cli-made", "--read-only", *data, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert re.fullmatch(r"msv1_[A-Za-z0-9_-]{43}", token)
    assert ops.with_token(token).get("/api/v1/accounts").status == 200
    assert ops.with_token(token).post("/api/v1/domains", {"name": "x.test"}).status == 403
    listing = run_cli("token", "list", *data, cwd=tmp_path).stdout
    assert "cli-made\tread-only\t" in listing and token not in listing
    users = run_cli("user", "list", "example.test", *data, cwd=tmp_path).stdout
    api_users = ops.all_items("/api/v1/accounts?domain=example.test")
    assert [line.split("\t")[0] for line in users.splitlines()] == [
        a["address"] for a in api_users]
    assert ops.post("/api/v1/domains", {"name": "cli.test"}).status == 201
    keygen = run_cli("dkim", "keygen", "cli.test", "--dated", "--algorithm", "ed25519", *data,
                     cwd=tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    [key] = ops.all_items("/api/v1/dkim-keys?domain=cli.test")
    assert re.fullmatch(r"mail-\d{8}-ed25519", key["selector"])
    assert key["record"]["zone_line"] in keygen.stdout  # the same record, either way
    assert run_cli("token", "revoke", "cli-made", *data, cwd=tmp_path).returncode == 0
    assert ops.with_token(token).get("/api/v1/accounts").status == 401


# -- the document and the problem types --------------------------------------------


def test_openapi_document_is_public_and_matches_the_routes(srv: ServerThread,
                                                           ops: ApiClient) -> None:
    reply = ops.with_token(None).get("/api/v1/openapi.json")
    assert reply.status == 200 and reply.body["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops_ in reply.body["paths"].items() for m in ops_}
    assert documented == {(op.method.upper(), "/api/v1" + op.path) for op in OPERATIONS}
    served = set()
    for resource in api.application(srv.app.services.admin).router.resources():
        for route in resource:
            if route.method != "HEAD":  # aiohttp adds HEAD to every GET
                served.add((route.method, api.PREFIX + resource.canonical))
    assert served == documented


def test_problem_types_are_documented(ops: ApiClient) -> None:
    reply = ops.get("/api/v1/accounts/nobody@example.test")
    assert reply.status == 404 and reply.problem_type == "account-not-found"
    page = ops.with_token(None).get(reply.body["type"])  # a relative reference: resolvable
    assert page.status == 200 and page.body["status"] == 404
    assert page.body["type"] == reply.body["type"]
    missing = ops.get("/api/v1/problems/no-such-thing")
    assert missing.status == 404 and missing.problem_type == "not-found"


def test_unknown_path_and_method(ops: ApiClient) -> None:
    assert ops.with_token(None).get("/api/v1/nothing-here").status == 404
    reply = ops.call("PUT", "/api/v1/domains", {"name": "x"})
    assert reply.status == 405 and "POST" in reply.headers["Allow"]


# -- domains -----------------------------------------------------------------------


def test_domain_lifecycle(ops: ApiClient) -> None:
    made = ops.post("/api/v1/domains", {"name": "Lifecycle.TEST"})
    assert made.status == 201 and made.body == {"name": "lifecycle.test", "configured": False}
    assert made.headers["Location"] == "/api/v1/domains/lifecycle.test"
    shown = ops.get(made.headers["Location"])
    assert shown.status == 200 and shown.headers["ETag"] == made.headers["ETag"]
    again = ops.post("/api/v1/domains", {"name": "lifecycle.test"})
    assert again.status == 409 and again.problem_type == "already-exists"
    bad = ops.post("/api/v1/domains", {"name": "no spaces.test"})
    assert bad.status == 422 and bad.problem_type == "invalid-name"
    odd = ops.post("/api/v1/domains", {"name": "semi;colon.test"})  # not a host name
    assert odd.status == 422 and odd.problem_type == "invalid-name"
    configured = ops.call("DELETE", "/api/v1/domains/example.test")
    assert configured.status == 409 and configured.problem_type == "cannot"
    assert ops.call("DELETE", "/api/v1/domains/lifecycle.test").status == 204
    gone = ops.get("/api/v1/domains/lifecycle.test")
    assert gone.status == 404 and gone.problem_type == "domain-not-found"


def test_bodies_are_checked(ops: ApiClient) -> None:
    for body, why in (({}, "missing"), ({"name": "a.test", "x": 1}, "unknown"),
                      ({"name": 5}, "name must be")):
        reply = ops.post("/api/v1/domains", body)
        assert reply.status == 400 and reply.problem_type == "invalid-request"
        assert why in reply.body["detail"]
    assert ops.post("/api/v1/domains", raw=b"{nope").status == 400
    assert ops.post("/api/v1/domains", raw=b"[]").status == 400
    reply = ops.post("/api/v1/domains", raw=b"name=a.test",
                     content_type="application/x-www-form-urlencoded")
    assert reply.status == 415 and reply.problem_type == "unsupported-media-type"


# -- accounts ----------------------------------------------------------------------


def test_account_lifecycle_with_etags(srv: ServerThread, ops: ApiClient) -> None:
    made = ops.post("/api/v1/accounts", {"address": "Carol@example.test",
                                         "password": "carol-secret-1", "quota": 1000})
    assert made.status == 201, made.body
    assert made.body == {"address": "carol@example.test", "quota": 1000, "used": 0,
                         "disabled": False}
    url = made.headers["Location"]
    assert url == "/api/v1/accounts/carol@example.test"
    etag = ops.get(url).headers["ETag"]

    stale = ops.call("PATCH", url, {"quota": 5}, headers={"If-Match": '"stale"'})
    assert stale.status == 412 and stale.problem_type == "etag-mismatch"
    assert ops.get(url).body["quota"] == 1000  # nothing changed
    changed = ops.call("PATCH", url, {"quota": 0, "disabled": True},
                       headers={"If-Match": etag}, content_type="application/merge-patch+json")
    assert changed.status == 200 and changed.body["disabled"] is True
    assert changed.body["quota"] == 0 and changed.headers["ETag"] != etag
    # The old tag no longer matches: a lost update is caught.
    assert ops.call("PATCH", url, {"disabled": False},
                    headers={"If-Match": etag}).status == 412
    assert ops.call("PATCH", url, {"disabled": False}, headers={"If-Match": "*"}).status == 200
    assert ops.call("PATCH", url, {"quota": -1}).status == 400

    weak = ops.call("PUT", url + "/password", {"password": "carol-secret-2"},
                    headers={"If-Match": "W/" + ops.get(url).headers["ETag"]})
    assert weak.status == 412  # If-Match compares strongly (RFC 9110 §13.1.1)
    short = ops.call("PUT", url + "/password", {"password": "short"})
    assert short.status == 422 and short.problem_type == "invalid-password"
    assert ops.call("PUT", url + "/password", {"password": "carol-secret-2"}).status == 204
    imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=30)
    imap.starttls()
    imap.login("carol@example.test", "carol-secret-2")
    imap.logout()

    assert ops.post("/api/v1/accounts", {"address": "x@nowhere.test",
                                         "password": "long-enough"}).problem_type == (
        "domain-not-found")
    assert ops.call("DELETE", url).status == 204
    assert ops.get(url).problem_type == "account-not-found"
    assert ops.get("/api/v1/accounts/no-at-sign").problem_type == "invalid-name"


def test_every_change_is_one_audit_line(ops: ApiClient) -> None:
    made = ops.post("/api/v1/accounts", {"address": "audit@example.test",
                                         "password": "audit-secret-1"})
    assert made.status == 201
    with capture_logs() as logs:
        assert ops.call("PATCH", made.headers["Location"], {"quota": 7}).status == 200
        assert ops.get(made.headers["Location"]).status == 200  # a read: no line
        assert ops.call("PUT", made.headers["Location"] + "/password",
                        {"password": "audit-secret-2"}).status == 204
    lines = [e for e in logs if e["event"] == "audit"]
    assert [e["what"] for e in lines] == ["account.update", "account.set_password"]
    update = lines[0]
    assert update["who"] == "ops" and update["target"] == "audit@example.test"
    assert update["before"]["quota"] == 0 and update["after"]["quota"] == 7
    assert "audit-secret" not in repr(logs)  # passwords never reach the log


# -- aliases -----------------------------------------------------------------------


def test_aliases(ops: ApiClient) -> None:
    made = ops.post("/api/v1/aliases", {"address": "@example.test",
                                        "target": "alice@example.test"})
    assert made.status == 201 and made.headers["Location"] == "/api/v1/aliases/@example.test"
    assert ops.get(made.headers["Location"]).body == {"address": "@example.test",
                                                      "target": "alice@example.test",
                                                      "targets": ["alice@example.test"]}
    team = ops.post("/api/v1/aliases", {"address": "team@example.test", "targets": [
        "alice@example.test", "bob@example.test", "Far@Elsewhere.TEST"]})
    assert team.status == 201 and team.body["targets"] == [
        "alice@example.test", "bob@example.test", "far@elsewhere.test"]
    assert ops.call("DELETE", "/api/v1/aliases/team@example.test").status == 204
    both = ops.post("/api/v1/aliases", {"address": "y@example.test", "target": "a@b.test",
                                        "targets": ["a@b.test"]})
    assert both.status == 400
    assert ops.post("/api/v1/aliases", {"address": "y@example.test", "targets": []}).status \
        in (400, 409)
    ops.post("/api/v1/aliases", {"address": "info@example.test", "target": "bob@example.test"})
    listed = ops.all_items("/api/v1/aliases?domain=example.test")
    assert [a["address"] for a in listed] == ["@example.test", "info@example.test"]
    no_target = ops.post("/api/v1/aliases", {"address": "x@example.test",
                                             "target": "nobody@example.test"})
    assert no_target.status == 404 and no_target.problem_type == "account-not-found"
    for address in ("@example.test", "info@example.test"):
        assert ops.call("DELETE", f"/api/v1/aliases/{address}").status == 204
    assert ops.get("/api/v1/aliases/info@example.test").problem_type == "not-found"


# -- pagination --------------------------------------------------------------------


def test_pages_are_stable_while_items_are_added(ops: ApiClient) -> None:
    for n in (1, 3, 5, 7):
        ops.post("/api/v1/domains", {"name": f"p{n}.page.test"})
    first = ops.get("/api/v1/domains?limit=2")
    assert first.status == 200 and len(first.body["items"]) == 2
    assert first.headers["Link"] == f'<{first.body["next"]}>; rel="next"'
    seen = [d["name"] for d in first.body["items"]]
    # Added while paging: one before the cursor, one after it.
    ops.post("/api/v1/domains", {"name": "a0.page.test"})
    ops.post("/api/v1/domains", {"name": "p6.page.test"})
    url = first.body["next"]
    while url is not None:
        reply = ops.get(url)
        assert len(reply.body["items"]) <= 2
        seen += [d["name"] for d in reply.body["items"]]
        url = reply.body["next"]
    assert len(seen) == len(set(seen))  # nothing twice
    assert {f"p{n}.page.test" for n in (1, 3, 5, 7)} <= set(seen)  # nothing skipped
    assert "p6.page.test" in seen and "a0.page.test" not in seen
    assert "Link" not in reply.headers
    for bad in ("limit=0", "limit=1001", "limit=x", "cursor=bogus", "cursor=c1.%FF"):
        reply = ops.get(f"/api/v1/domains?{bad}")
        assert reply.status == 400, bad
    assert ops.get("/api/v1/domains?cursor=nope").problem_type == "invalid-cursor"
    misspelt = ops.get("/api/v1/accounts?domian=example.test")
    assert misspelt.status == 400 and "domian" in misspelt.body["detail"]
    assert ops.get("/api/v1/accounts?domain=a.test&domain=b.test").status == 400


# -- the outbound queue ------------------------------------------------------------


def test_queue_list_filters_show_retry_delete(srv: ServerThread, ops: ApiClient) -> None:
    queue = srv.app.queue
    rounds = queue.rounds
    one = srv.run(queue.enqueue("alice@example.test", ["x@dest.test"], MESSAGE))
    two = srv.run(queue.enqueue("alice@example.test", ["y@other.test", "z@dest.test"], MESSAGE))
    ids = {one, two}
    srv.run(asyncio.wait_for(queue.wait_rounds(rounds + 2), 30))  # DNS fails: both deferred

    listed = ops.all_items("/api/v1/queue")
    assert {m["id"] for m in listed} >= ids
    other = ops.all_items("/api/v1/queue?domain=Other.TEST")
    assert [m["id"] for m in other] == [two]
    deferred = ops.all_items("/api/v1/queue?state=deferred")
    assert {m["id"] for m in deferred} >= ids
    assert ops.all_items("/api/v1/queue?state=delivered") == []
    assert ops.all_items("/api/v1/queue?min_age=3600") == []
    assert {m["id"] for m in ops.all_items("/api/v1/queue?max_age=3600")} >= ids
    assert ops.get("/api/v1/queue?state=bogus").status == 400

    msg_id = one
    shown = ops.get(f"/api/v1/queue/{msg_id}")
    assert shown.status == 200 and shown.body["recipients"][0]["address"] == "x@dest.test"
    assert shown.body["recipients"][0]["status"] == "deferred"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", shown.body["created"])
    retried = ops.post(f"/api/v1/queue/{msg_id}/retry", headers={
        "If-Match": shown.headers["ETag"]})
    assert retried.status == 200 and retried.body["id"] == msg_id
    assert ops.call("DELETE", f"/api/v1/queue/{msg_id}").status == 204
    assert ops.get(f"/api/v1/queue/{msg_id}").problem_type == "not-found"
    assert ops.post(f"/api/v1/queue/{msg_id}/retry").status == 404
    assert ops.call("DELETE", f"/api/v1/queue/{two}").status == 204


def test_queue_hold_and_release(srv: ServerThread, ops: ApiClient) -> None:
    """hold takes a message off the schedule (no round, flush leaves it) until
    release makes it due again (as Postfix's postsuper -h / -H)."""
    queue = srv.app.queue
    rounds = queue.rounds
    qid = srv.run(queue.enqueue("alice@example.test", ["h@dest.test"], MESSAGE))
    srv.run(asyncio.wait_for(queue.wait_rounds(rounds + 1), 30))  # DNS fails: deferred
    held = ops.post(f"/api/v1/queue/{qid}/hold")
    assert held.status == 200 and held.body["held"] is True
    assert ops.get(f"/api/v1/queue/{qid}").body["held"] is True
    srv.run(srv.app.admin().flush())
    attempts = ops.get(f"/api/v1/queue/{qid}").body["attempts"]
    assert srv.store.queue_held() == {qid}
    released = ops.post(f"/api/v1/queue/{qid}/release")
    assert released.status == 200 and released.body["held"] is False
    srv.run(asyncio.wait_for(queue.wait_rounds(queue.rounds + 1), 30))
    assert ops.get(f"/api/v1/queue/{qid}").body["attempts"] > attempts  # tried again
    again = ops.post(f"/api/v1/queue/{qid}/release")
    assert again.status == 409 and again.problem_type == "cannot"
    assert ops.post("/api/v1/queue/NOSUCHID/hold").status == 404
    assert ops.call("DELETE", f"/api/v1/queue/{qid}").status == 204


def test_queue_bounce_returns_the_message_with_a_dsn(srv: ServerThread, ops: ApiClient) -> None:
    """bounce: the next round (now) fails every recipient still to go with
    550 5.0.0 and the reason, the local sender gets the DSN, the message
    leaves the queue; a held message is bounced too."""
    queue = srv.app.queue
    rounds = queue.rounds
    qid = srv.run(queue.enqueue("alice@example.test", ["b@dest.test", "c@dest.test"], MESSAGE))
    srv.run(asyncio.wait_for(queue.wait_rounds(rounds + 1), 30))  # DNS fails: deferred
    assert ops.post(f"/api/v1/queue/{qid}/hold").status == 200
    shown = ops.get(f"/api/v1/queue/{qid}")
    assert shown.body["bounce"] is None
    stale = ops.post(f"/api/v1/queue/{qid}/bounce", {"reason": "x"},
                     headers={"If-Match": '"stale"'})
    assert stale.status == 412
    inbox = srv.store.get_mailbox("alice@example.test", "INBOX").id
    before = len(srv.store.list_messages(inbox))
    rounds = queue.rounds
    reply = ops.post(f"/api/v1/queue/{qid}/bounce", {"reason": "spam\r\nrun  from   a\x00 bot"},
                     headers={"If-Match": shown.headers["ETag"]})
    assert reply.status == 202, reply.body
    assert reply.body["bounce"] == "550 5.0.0 spam run from a bot"
    srv.run(asyncio.wait_for(queue.wait_rounds(rounds + 1), 30))
    assert ops.get(f"/api/v1/queue/{qid}").status == 404
    records = srv.store.list_messages(inbox)
    assert len(records) == before + 1
    report = srv.store.get_blob(records[-1].blob_id)
    assert b"multipart/report; report-type=delivery-status" in report
    assert report.count(b"Action: failed") == 2
    assert b"Diagnostic-Code: smtp; 550 5.0.0 spam run from a bot" in report
    assert ops.post("/api/v1/queue/NOSUCHID/bounce").status == 404
    assert ops.post(f"/api/v1/queue/{qid}/bounce", {"why": "x"}).status in (400, 404)


# -- DKIM keys ---------------------------------------------------------------------


def test_dkim_key_with_a_dated_selector(ops: ApiClient) -> None:
    made = ops.post("/api/v1/dkim-keys", {"domain": "example.test", "algorithm": "ed25519"})
    assert made.status == 201, made.body
    key = made.body
    assert re.fullmatch(r"mail-\d{8}-ed25519", key["selector"])
    assert made.headers["Location"] == f"/api/v1/dkim-keys/example.test/{key['selector']}"
    record = key["record"]
    assert record["type"] == "TXT"
    assert record["name"] == f"{key['selector']}._domainkey.example.test"
    assert record["value"].startswith("v=DKIM1; k=ed25519; p=")
    assert ops.get(made.headers["Location"]).body == key
    assert key in ops.all_items("/api/v1/dkim-keys?domain=example.test")
    again = ops.post("/api/v1/dkim-keys", {"domain": "example.test", "algorithm": "ed25519"})
    assert again.status == 409 and again.problem_type == "already-exists"
    bad = ops.post("/api/v1/dkim-keys", {"domain": "example.test", "selector": "../x"})
    assert bad.status == 422 and bad.problem_type == "invalid-name"
    assert ops.post("/api/v1/dkim-keys", {"domain": "nowhere.test"}).status == 404
    assert ops.get("/api/v1/dkim-keys/example.test/none").status == 404


def test_dkim_key_rotation_retires_the_old_key(srv: ServerThread, ops: ApiClient) -> None:
    """rotate: a new dated key signs from the next message (the keyring
    notices the directory change), the old one is retired but keeps its
    record until deleted; an active key cannot be deleted."""
    assert ops.post("/api/v1/domains", {"name": "rotate.test"}).status == 201
    old = ops.post("/api/v1/dkim-keys", {"domain": "rotate.test", "selector": "old"}).body
    assert old["signing"] is True and old["retired"] is False
    assert [k.selector for k in srv.app.keyring.keys_for("rotate.test")] == ["old"]
    made = ops.post("/api/v1/dkim-keys/rotate.test/rotate")
    assert made.status == 201, made.body
    new = made.body
    assert re.fullmatch(r"mail-\d{8}", new["selector"]) and new["signing"] is True
    assert made.headers["Location"] == f"/api/v1/dkim-keys/rotate.test/{new['selector']}"
    assert [k.selector for k in srv.app.keyring.keys_for("rotate.test")] == [new["selector"]]
    retired = ops.get("/api/v1/dkim-keys/rotate.test/old")
    assert retired.body == {**old, "signing": False, "retired": True}
    listed = ops.all_items("/api/v1/dkim-keys?domain=rotate.test")
    assert [k["selector"] for k in listed] == sorted(["old", new["selector"]])
    assert ops.post("/api/v1/dkim-keys/rotate.test/rotate", {}).status == 409  # today's exists
    active = ops.call("DELETE", f"/api/v1/dkim-keys/rotate.test/{new['selector']}")
    assert active.status == 409 and active.problem_type == "cannot"
    assert ops.call("DELETE", "/api/v1/dkim-keys/rotate.test/old",
                    headers={"If-Match": retired.headers["ETag"]}).status == 204
    assert ops.get("/api/v1/dkim-keys/rotate.test/old").status == 404
    assert ops.post("/api/v1/dkim-keys/nowhere.test/rotate").status == 404
    bad = ops.post("/api/v1/dkim-keys/rotate.test/rotate", {"algorithm": "dsa"})
    assert bad.status == 422


# -- several workers ---------------------------------------------------------------

WORKERS_CONFIG = """\
hostname = "mx.example.test"
data_dir = "data"
domains = ["example.test"]
workers = 2

[log]
format = "json"

[listeners.smtp]
protocol = "smtp"
port = 0

[listeners.http]
protocol = "http"
port = 0
"""


def test_every_worker_serves_the_same_api(tmp_path: Path) -> None:
    """``workers = 2``: whichever worker the kernel hands a request to, a token
    made by the CLI works and a change made through one worker is seen by
    the other (the store is shared; writes go through the supervisor)."""
    conf = tmp_path / "mailserver.toml"
    conf.write_text(WORKERS_CONFIG, encoding="utf-8")
    assert run_cli("init", "-c", conf).returncode == 0
    made = run_cli("token", "create", "ops", "-c", conf)
    assert made.returncode == 0, made.stderr
    daemon = Daemon("-c", conf, timeout=45.0)
    try:
        daemon.wait_for("server_ready")
        client = ApiClient(daemon.ports["http"], made.stdout.strip())
        served_by: set[int] = set()
        names: list[str] = []
        for n in range(60):  # each request on a new connection: spread over the workers
            name = f"w{n}.workers.test"
            assert client.post("/api/v1/domains", {"name": name}).status == 201
            names.append(name)
            served_by.add(daemon.wait_for("audit", target=name)["worker"])
            listed = [d["name"] for d in client.all_items("/api/v1/domains")]
            assert [x for x in listed if x.endswith(".workers.test")] == sorted(names)
            if served_by == {0, 1}:
                break
        assert served_by == {0, 1}
        # The queue runs in worker 0; a queue action from worker 1 works too.
        assert client.get("/api/v1/queue").body == {"items": [], "next": None}
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_mailboxes_of_an_account(srv: ServerThread, ops: ApiClient) -> None:
    srv.run(srv.store.append("alice@example.test", "INBOX", b"Subject: x\r\n\r\nbody\r\n",
                             b"", internal_date=1))
    reply = ops.get("/api/v1/accounts/alice@example.test/mailboxes")
    assert reply.status == 200
    boxes = {m["name"]: m for m in reply.body["items"]}
    assert {"INBOX", "Sent", "Trash", "Junk", "Drafts"} <= set(boxes)
    inbox = boxes["INBOX"]
    assert inbox["messages"] >= 1 and inbox["unseen"] == inbox["messages"] and inbox["size"] > 0
    assert boxes["Junk"]["special_use"] == "\\Junk" and inbox["special_use"] is None
    assert ops.get("/api/v1/accounts/nobody@example.test/mailboxes").status == 404


def test_status_of_the_running_daemon(srv: ServerThread, ops: ApiClient) -> None:
    reply = ops.get("/api/v1/status")
    assert reply.status == 200
    body = reply.body
    assert body["pid"] == os.getpid() and body["workers"] == 1 and body["uptime"] >= 0
    ports = {x["name"]: x["port"] for x in body["listeners"]}
    assert ports["http"] == srv.port("http") and ports["imap"] == srv.port("imap")
    assert body["queue"]["messages"] >= 0
    assert set(body["connections"]) <= {"smtp", "submission", "imap", "http"}
    assert 0 < body["store"]["used"] <= body["store"]["map_size"]


def test_mailserver_status_asks_the_api(tmp_path: Path) -> None:
    """``mailserver status``: running or not from the pid file; uptime,
    listeners, queue and store from ``GET /api/v1/status`` with a token; with
    ``workers = 2`` the pid is the supervisor's."""
    with socket.socket() as s:  # a free port for the http listener, named in the file
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "mailserver.toml"
    conf.write_text(WORKERS_CONFIG.replace('protocol = "http"\nport = 0',
                                           f'protocol = "http"\naddress = "127.0.0.1"\n'
                                           f"port = {port}"), encoding="utf-8")
    assert run_cli("init", "-c", conf).returncode == 0
    token = run_cli("token", "create", "ops", "-c", conf).stdout.strip()
    daemon = Daemon("-c", conf, timeout=45.0)
    try:
        daemon.wait_for("server_ready")
        out = run_cli("status", "-c", conf)
        assert out.returncode == 0 and out.stdout.startswith(f"running (pid {daemon.proc.pid})")
        with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as held:
            held.ehlo("client.test")  # open in whichever worker took it
            out = run_cli("status", "-c", conf, "--token", token)
        assert out.returncode == 0, out.stderr
        assert "open      smtp 1" in out.stdout, out.stdout
        assert f"listener  http: http on 127.0.0.1:{port} tls=none" in out.stdout
        assert "2 worker(s)" in out.stdout and "queue     0 message(s)" in out.stdout
        assert re.search(r"store     \d+ of \d+ octets \(\d+\.\d %\)", out.stdout), out.stdout
    finally:
        daemon.stop()
    assert run_cli("status", "-c", conf).returncode == 3


def test_junk_of_an_account(ops: ApiClient) -> None:
    stats = ops.get("/api/v1/accounts/alice@example.test/junk")
    assert stats.status == 200 and set(stats.body) == {"spam", "ham", "global_spam",
                                                      "global_ham", "threshold", "arm"}
    assert (stats.body["threshold"], stats.body["arm"]) == (0.8, "control")
    url = "/api/v1/accounts/alice@example.test/junk/threshold"
    own = ops.call("PUT", url, {"threshold": 0.95})
    assert own.status == 200 and (own.body["threshold"], own.body["arm"]) == (0.95, "own")
    for bad in ({"threshold": 1.5}, {"threshold": 0}):
        refused = ops.call("PUT", url, bad)
        assert refused.status == 422 and "threshold" in refused.body["detail"], refused.body
    assert ops.call("PUT", url, {"threshold": "high"}).status == 400
    assert ops.call("PUT", url, {"limit": 1}).status == 400
    back = ops.call("PUT", url, {"threshold": None})
    assert back.status == 200 and (back.body["threshold"], back.body["arm"]) == (0.8, "control")
    tested = ops.post("/api/v1/accounts/alice@example.test/junk/test",
                      {"message": "Subject: hello\r\n\r\nlunch tomorrow?\r\n"})
    assert tested.status == 200 and 0 <= tested.body["score"] <= 1
    assert tested.body["threshold"] == 0.8 and isinstance(tested.body["features"], list)
    assert ops.call("DELETE", "/api/v1/accounts/alice@example.test/junk").status == 204
    assert ops.get("/api/v1/accounts/nobody@example.test/junk").status == 404
