"""The SMTP DSN extension (RFC 3461) end to end.

Ingress: a real server, a real client (smtplib): EHLO advertises DSN, the
parameters are parsed (501 5.5.4 on bad syntax, 555 for what is not ours),
and a local NOTIFY=SUCCESS brings the sender a "delivered" report.

Outbound: the real queue, our DNS server and a receiving server: NOTIFY
decides which reports go out, RET and ENVID/ORCPT shape them, and a next
hop that offers DSN gets the parameters instead of us reporting "relayed".
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.outbound import OutboundEnv, outbound_env
from support.server import ServerThread

from mailserver.protocol.dsn_params import DsnRequest, MailDsn, Orcpt, RcptDsn

ALICE = "alice@example.test"
BOB = "bob@example.test"
BODY = (
    b"From: Alice <alice@example.test>\r\nTo: bob@dest.test\r\nSubject: dsn test\r\n"
    b"Message-ID: <dsn@example.test>\r\n\r\nthe body line\r\n"
)


# -- ingress -------------------------------------------------------------------------

def _client(server: ServerThread) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30)
    s.ehlo("client.test")
    return s


def test_ehlo_advertises_dsn(server: ServerThread) -> None:
    with _client(server) as s:
        assert s.has_extn("dsn")


@pytest.mark.parametrize(
    ("mail", "rcpt", "want"),
    [
        ("RET=HDRS ENVID=QQ314159", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2Bx@example.test",
         (250, 250)),
        ("ret=full", "notify=never", (250, 250)),
        ("SIZE=100 ENVID=a+2Bb BODY=8BITMIME", "ORCPT=utf-8;b\\x{F6}b@example.test", (250, 250)),
        ("RET=ALL", None, (501, None)),
        ("ENVID=a+zz", None, (501, None)),
        ("RET=HDRS RET=FULL", None, (501, None)),
        ("NOTIFY=SUCCESS", None, (555, None)),  # an RCPT parameter on MAIL
        ("", "NOTIFY=NEVER,SUCCESS", (250, 501)),
        ("", "ORCPT=nosemicolon", (250, 501)),
        ("", "RET=HDRS", (250, 555)),  # a MAIL parameter on RCPT
        ("", "XFOO=1", (250, 555)),
    ],
)
def test_parameters_parsed(server: ServerThread, mail: str, rcpt: str | None,
                           want: tuple[int, int | None]) -> None:
    with _client(server) as s:
        code, text = s.docmd(f"MAIL FROM:<{ALICE}> {mail}".rstrip())
        assert code == want[0], text
        if code == 501:
            assert text.startswith(b"5.5.4 ")
        if rcpt is not None:
            code, text = s.docmd(f"RCPT TO:<{BOB}> {rcpt}")
            assert code == want[1], text
            if code == 501:
                assert text.startswith(b"5.5.4 ")


def test_after_helo_dsn_parameters_are_refused(server: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as s:
        s.helo("client.test")
        code, _ = s.docmd(f"MAIL FROM:<{ALICE}> RET=HDRS")
        assert code == 501


def _inbox(server: ServerThread, account: str) -> list[bytes]:
    store = server.store
    mailbox = server.call(store.get_mailbox, account, "INBOX")
    records = server.call(store.list_messages, mailbox.id)
    return [r.prefix + server.call(store.get_blob, r.blob_id) for r in records]


def test_local_notify_success_sends_a_delivered_report(server: ServerThread) -> None:
    with _client(server) as s:
        assert s.docmd(f"MAIL FROM:<{ALICE}> RET=FULL ENVID=QQ+2B1")[0] == 250
        assert s.docmd(f"RCPT TO:<{BOB}> NOTIFY=SUCCESS ORCPT=rfc822;Bob+2Btag@example.test")[0] \
            == 250
        assert s.docmd(f"RCPT TO:<{ALICE}> NOTIFY=FAILURE")[0] == 250
        code, text = s.data(BODY)
        assert code == 250
    (delivered,) = _inbox(server, BOB)
    assert b"the body line" in delivered
    qid = text.split()[-1]  # "2.0.0 Ok: queued as ID": the report names the message by it
    alice = _inbox(server, ALICE)
    assert len(alice) == 2  # her copy and the report about bob only
    report = next(m for m in alice if b"multipart/report" in m)
    assert report.startswith(b"Return-Path: <>\r\n")
    msg = email.message_from_bytes(report, policy=email.policy.default)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    assert b"Original-Envelope-Id: QQ+1\r\n" in report
    assert b"\r\nX-Queue-ID: " + qid + b"\r\n" in report
    assert b"Original-Recipient: rfc822; Bob+tag@example.test\r\n" \
           b"Final-Recipient: rfc822; bob@example.test\r\nAction: delivered\r\n" \
           b"Status: 2.0.0\r\n" in report
    assert b"the body line" not in report  # success reports return headers only


def test_no_report_without_success_or_for_the_null_sender(server: ServerThread) -> None:
    with _client(server) as s:
        s.docmd("MAIL FROM:<>")
        s.docmd(f"RCPT TO:<{BOB}> NOTIFY=SUCCESS")
        assert s.data(BODY)[0] == 250
        s.docmd(f"MAIL FROM:<{ALICE}>")
        s.docmd(f"RCPT TO:<{BOB}> NOTIFY=FAILURE,DELAY")
        assert s.data(BODY)[0] == 250
    assert len(_inbox(server, BOB)) == 2
    assert _inbox(server, ALICE) == []


# -- outbound ------------------------------------------------------------------------

class DsnNextHop:
    """A minimal receiving SMTP server that offers DSN (RFC 3461) and records the
    MAIL and RCPT lines it was sent, parameters included."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.messages = 0
        self._got = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def wait(self, n: int) -> None:
        async with asyncio.timeout(30):
            while self.messages < n:
                self._got.clear()
                await self._got.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 dsn.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-dsn.test\r\n250-8BITMIME\r\n250 DSN\r\n")
                elif verb in (b"MAIL", b"RCPT"):
                    self.lines.append(line.decode().rstrip("\r\n"))
                    writer.write(b"250 2.0.0 ok\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    while (await reader.readline()) not in (b".\r\n", b""):
                        pass
                    self.messages += 1
                    self._got.set()
                    writer.write(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    break
                else:
                    writer.write(b"250 2.0.0 ok\r\n")
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[OutboundEnv]:
    async with outbound_env(tmp_path, OutboundEnv) as e:
        yield e


def _request(**rcpts: RcptDsn) -> DsnRequest:
    return DsnRequest(MailDsn("HDRS", "ENV 42"),
                      {f"{k}@dest.test": v for k, v in rcpts.items()})


async def test_success_to_a_next_hop_without_dsn_is_reported_relayed(env: OutboundEnv) -> None:
    mgr = await env.manager()
    dsn = _request(bob=RcptDsn(frozenset({"SUCCESS"}), Orcpt("rfc822", "Bob@dest.test")),
                   carol=RcptDsn(frozenset({"FAILURE"})))
    await mgr.enqueue(ALICE, ["bob@dest.test", "carol@dest.test"], BODY, dsn=dsn)
    await env.rx.wait_for(1)
    ((report, to),) = await env.sink.wait(1)
    assert to == ALICE
    assert b"Original-Envelope-Id: ENV 42\r\n" in report
    assert b"Original-Recipient: rfc822; Bob@dest.test\r\n" \
           b"Final-Recipient: rfc822; bob@dest.test\r\nAction: relayed\r\n" in report
    assert b"carol@dest.test" not in report.split(b"message/delivery-status", 1)[1].split(
        b"\r\n--", 1)[0]
    await mgr.wait_idle()
    assert len(env.local) == 1


async def test_notify_never_silences_failure_and_ret_full_returns_the_message(env: OutboundEnv) -> None:
    env.rx.mode = "reject"
    mgr = await env.manager()
    dsn = DsnRequest(MailDsn(ret="FULL"), {
        "bob@dest.test": RcptDsn(notify=frozenset()),
        "carol@dest.test": RcptDsn(frozenset({"FAILURE"}), Orcpt("rfc822", "c@old.test")),
    })
    await mgr.enqueue(ALICE, ["bob@dest.test", "carol@dest.test"], BODY, dsn=dsn)
    ((report, _),) = await env.sink.wait(1)
    await mgr.wait_rounds(1)
    await mgr.wait_idle()
    assert len(env.local) == 1
    fields = report.split(b"message/delivery-status", 1)[1].split(b"\r\n--", 1)[0]
    assert b"Final-Recipient: rfc822; carol@dest.test" in fields
    assert b"bob@dest.test" not in fields
    assert b"Original-Recipient: rfc822; c@old.test" in fields
    assert b"Content-Type: message/rfc822" in report and b"the body line" in report


async def test_next_hop_offering_dsn_gets_the_parameters_and_reports_itself(env: OutboundEnv) -> None:
    hop = DsnNextHop()
    await hop.start()
    try:
        mgr = await env.manager(smtp_port=hop.port)
        dsn = _request(bob=RcptDsn(frozenset({"SUCCESS", "FAILURE"}),
                                   Orcpt("rfc822", "b+1@dest.test")))
        await mgr.enqueue(ALICE, ["bob@dest.test", "carol@dest.test"], BODY, dsn=dsn)
        await hop.wait(1)
        await mgr.wait_rounds(1)
        await mgr.wait_idle()
    finally:
        await hop.stop()
    mail, *rcpts = hop.lines
    assert mail.startswith(f"MAIL FROM:<{ALICE}>")
    assert mail.endswith(" RET=HDRS ENVID=ENV+2042")
    assert sorted(rcpts) == [
        "RCPT TO:<bob@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2B1@dest.test",
        "RCPT TO:<carol@dest.test>",
    ]
    assert env.local == []  # success is the next hop's to report (RFC 3461 §5.2.2)
