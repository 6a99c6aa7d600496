"""The stage pipeline on a real server: a stage added to a listener's pipeline
refuses, adds header fields and runs its connect/HELO checks once, without any
change to the connection code (``checks``, ``smtp.handler``)."""

from __future__ import annotations

import smtplib

import pytest

from mailserver.checks import ACCEPT, CheckContext, Pipeline, RecipientFacts, Verdict, refuse
from mailserver.errors import SmtpReply

BLOCKED = SmtpReply(550, "5.7.1", "Blocked by the test stage")


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    async def check_connect(self, ctx: CheckContext) -> Verdict:
        self.seen.append(("connect", ctx.peer_ip))
        return ACCEPT

    def check_helo(self, ctx: CheckContext) -> Verdict:
        self.seen.append(("helo", ctx.helo))
        return ACCEPT

    def check_rcpt(self, ctx: CheckContext, rcpt: RecipientFacts) -> Verdict:
        if rcpt.address == "bob@example.test":
            return refuse(BLOCKED, "test")
        return ACCEPT

    async def check_data(self, ctx: CheckContext, content: bytes) -> Verdict:
        return Verdict(headers=(("X-Stage", f"listener={ctx.listener}"),), reason="tag")


@pytest.fixture
def recorder(server) -> Recorder:
    stage = Recorder()
    hooks = server.app.services.smtp_hooks["smtp"]
    hooks.pipeline = Pipeline([*hooks.pipeline.stages, stage])
    return stage


def test_a_new_stage_needs_no_connection_code(server, recorder: Recorder) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as smtp:
        smtp.ehlo("client.example")
        for _ in range(2):  # connect/HELO stages run once per connection
            smtp.mail("someone@remote.example")
            code, text = smtp.rcpt("bob@example.test")
            assert (code, text) == (550, b"5.7.1 Blocked by the test stage")
            smtp.rset()
        code, _ = smtp.rcpt("nobody@example.test")  # the shipped rules still run first
        assert code == 503  # no MAIL after RSET
        smtp.mail("someone@remote.example")
        assert smtp.rcpt("nobody@example.test")[0] == 550
        assert smtp.rcpt("alice@example.test")[0] == 250
        smtp.data(b"Subject: hi\r\n\r\nbody\r\n")
    assert recorder.seen == [("connect", "127.0.0.1"), ("helo", "client.example")]
    mailbox = server.call(server.store.get_mailbox, "alice@example.test", "INBOX")
    (record,) = server.call(server.store.list_messages, mailbox.id)
    blob = server.call(server.store.get_blob, record.blob_id)
    assert blob.startswith(b"Received: ")
    head, _, body = blob.partition(b"\r\n\r\n")
    assert b"\r\nX-Stage: listener=smtp\r\nSubject: hi" in head and body == b"body\r\n"


def test_one_resolver_shared_by_queue_and_stages(server) -> None:
    services = server.app.services
    resolvers = {id(hooks.resolver) for hooks in services.smtp_hooks.values()}
    assert resolvers == {id(services.queue._resolver)}
    assert services.queue._resolver is not None
