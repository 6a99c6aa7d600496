"""Outbound PIPELINING (RFC 2920) and connection reuse, seen from the receiving server.

The receiver (tests/support/smtpreceiver.py) records every chunk it reads
off each connection; a pipelined envelope arrives as one chunk holding MAIL
FROM and every RCPT TO.  Waiting is on events, never sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.outbound import OutboundEnv, outbound_env, queued_or_none

from mailserver.queue.model import RcptStatus
from mailserver.queue.pipeline import NextHopReply, NextHopReplyError, NextHopReplyParser

SENDER = "alice@example.test"


def message(subject: str) -> bytes:
    return (f"From: {SENDER}\r\nTo: bob@dest.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.test>\r\n\r\nbody of {subject}\r\n").encode()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[OutboundEnv]:
    async with outbound_env(tmp_path, OutboundEnv) as e:
        yield e


def _commands(reads: list[bytes]) -> list[list[bytes]]:
    """The command verbs of each read chunk (DATA content excluded)."""
    return [[line.split(b" ")[0] for line in chunk.split(b"\r\n") if line]
            for chunk in reads if not chunk.startswith((b"From:", b"DKIM"))]


async def test_envelope_is_pipelined_and_rcpt_results_stay_per_recipient(env: OutboundEnv) -> None:
    env.rx.rcpt_replies["nobody@dest.test"] = "550 5.1.1 no such user"
    env.rx.rcpt_replies["later@dest.test"] = "452 4.2.2 mailbox full"
    mgr = env.unstarted_manager()
    rcpts = ["bob@dest.test", "nobody@dest.test", "carol@dest.test", "later@dest.test"]
    qid = await mgr.enqueue(SENDER, rcpts, message("pipelined"))
    await mgr.start()
    (got,) = await env.rx.wait_for(1)
    assert got.rcpt_tos == ["bob@dest.test", "carol@dest.test"] and got.tls
    await env.wait_local(1)
    assert b"Final-Recipient: rfc822; nobody@dest.test" in env.local[0][0]
    assert b"later@dest.test" not in env.local[0][0].split(b"\r\n\r\n--")[0]
    await mgr.wait_idle()
    rec = await queued_or_none(env.admin, qid)
    assert rec is not None
    states = {r.address: (r.status, r.last_error[:3]) for r in rec.recipients}
    assert states == {
        "bob@dest.test": (RcptStatus.DELIVERED.value, "250"),
        "nobody@dest.test": (RcptStatus.FAILED.value, "550"),
        "carol@dest.test": (RcptStatus.DELIVERED.value, "250"),
        "later@dest.test": (RcptStatus.DEFERRED.value, "452"),
    }
    (conn,) = env.rx.reads
    # One read holds MAIL and all four RCPTs (RFC 2920 §3.1); DATA comes after their replies.
    batch = [c for c in _commands(conn) if b"MAIL" in c]
    assert batch == [[b"MAIL"] + [b"RCPT"] * 4]
    after = _commands(conn)[_commands(conn).index(batch[0]) + 1]
    assert after == [b"DATA"]
    await env.admin.delete_queued(qid)


async def test_without_pipelining_one_command_per_round_trip(env: OutboundEnv) -> None:
    env.rx.pipelining = False
    env.rx.rcpt_replies["nobody@dest.test"] = "550 5.1.1 no such user"
    mgr = env.unstarted_manager()
    await mgr.enqueue(SENDER, ["bob@dest.test", "nobody@dest.test"], message("serial"))
    await mgr.start()
    (got,) = await env.rx.wait_for(1)
    assert got.rcpt_tos == ["bob@dest.test"]
    await env.wait_local(1)
    (conn,) = env.rx.reads
    cmds = _commands(conn)
    assert [b"MAIL"] in cmds and cmds.count([b"RCPT"]) == 2


async def test_all_rcpts_refused_sends_no_data(env: OutboundEnv) -> None:
    env.rx.mode = "reject"
    mgr = env.unstarted_manager()
    await mgr.enqueue(SENDER, ["x@dest.test", "y@dest.test"], message("refused"))
    await mgr.start()
    await env.wait_local(1)
    await mgr.wait_idle()
    assert env.rx.received == []
    assert all(b"DATA" not in chunk for chunk in env.rx.reads[0])


async def test_messages_to_one_destination_share_a_connection(env: OutboundEnv) -> None:
    mgr = env.unstarted_manager(max_connections_per_domain=1)
    for i in range(4):
        await mgr.enqueue(SENDER, [f"u{i}@dest.test"], message(f"reuse{i}"))
    await mgr.start()
    got = await env.rx.wait_for(4)
    assert sorted(r.rcpt_tos[0] for r in got) == [f"u{i}@dest.test" for i in range(4)]
    await mgr.wait_idle()
    assert env.rx.connections == 1
    cmds = [c for chunk in _commands(env.rx.reads[0]) for c in chunk]
    assert cmds.count(b"RSET") == 3 and cmds.count(b"EHLO") == 2  # before and after STARTTLS
    assert b"QUIT" not in cmds  # still pooled
    await mgr.stop()  # closes the pool: QUIT
    await env.rx.wait_closed(1)
    assert env.rx.reads[0][-1] == b"QUIT\r\n"


async def test_a_pooled_connection_the_server_dropped_is_replaced(env: OutboundEnv) -> None:
    mgr = env.unstarted_manager()
    await mgr.start()
    await mgr.enqueue(SENDER, ["a@dest.test"], message("first"))
    await env.rx.wait_for(1)
    await mgr.wait_idle()
    env.rx.drop_connections()
    await env.rx.wait_closed(1)
    await mgr.enqueue(SENDER, ["b@dest.test"], message("second"))
    got = await env.rx.wait_for(2)
    assert got[1].rcpt_tos == ["b@dest.test"]
    assert env.rx.connections == 2
    await mgr.wait_idle()
    assert await env.admin.list_queue() == []


async def test_idle_pooled_connection_is_closed_with_quit(env: OutboundEnv) -> None:
    mgr = env.unstarted_manager(reuse_idle=0.05)
    await mgr.start()
    await mgr.enqueue(SENDER, ["a@dest.test"], message("idle"))
    await env.rx.wait_for(1)
    await env.rx.wait_closed(1)
    assert env.rx.reads[0][-1] == b"QUIT\r\n"


async def test_reuse_off_quits_after_each_message(env: OutboundEnv) -> None:
    mgr = env.unstarted_manager(reuse_idle=0.0)
    await mgr.start()
    await mgr.enqueue(SENDER, ["a@dest.test"], message("one"))
    await env.rx.wait_closed(1)
    await mgr.enqueue(SENDER, ["b@dest.test"], message("two"))
    await env.rx.wait_closed(2)
    assert env.rx.connections == 2
    assert all(reads[-1] == b"QUIT\r\n" for reads in env.rx.reads)


# -- the reply parser, fed whole, byte by byte, and with trailing data -------------

REPLIES = b"250 2.1.0 OK\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n451 later\n"
EXPECTED = [NextHopReply(250, "2.1.0 OK"), NextHopReply(550, "5.1.1 no such\n5.1.1 user"),
            NextHopReply(451, "later")]


def _drain(p: NextHopReplyParser) -> list[NextHopReply]:
    out = []
    while (r := p.next_reply()) is not None:
        out.append(r)
    return out


def test_reply_parser_whole_bytewise_and_trailing() -> None:
    p = NextHopReplyParser()
    p.feed(REPLIES)
    assert _drain(p) == EXPECTED and p.pending == 0
    p = NextHopReplyParser()
    got: list[NextHopReply] = []
    for i in range(len(REPLIES)):
        p.feed(REPLIES[i:i + 1])
        got += _drain(p)
    assert got == EXPECTED
    p = NextHopReplyParser()
    p.feed(REPLIES + b"250-part")
    assert _drain(p) == EXPECTED and p.pending == len(b"250-part")
    p.feed(b"\r\n250 done\r\n")
    assert _drain(p) == [NextHopReply(250, "part\ndone")]


@pytest.mark.parametrize("bad", [b"hello\r\n", b"25 short\r\n", b"250x\r\n",
                                 b"250-a\r\n251 b\r\n", b"2" * 9000, b"250-" + b"x" * 9000,
                                 b"250-ok\r\n" * 6000])
def test_reply_parser_refuses_malformed_or_endless_replies(bad: bytes) -> None:
    p = NextHopReplyParser()
    p.feed(bad)
    with pytest.raises(NextHopReplyError):
        _drain(p)


async def test_a_destination_that_says_slow_down_is_paused(env: OutboundEnv) -> None:
    """421 4.7.x from the receiver: the domain's sessions are halved and it is
    paused; a message due meanwhile is deferred without a connection."""
    env.rx.rcpt_replies["busy@dest.test"] = "421 4.7.28 Unusual rate of mail, slow down"
    mgr = await env.manager()
    first = await mgr.enqueue(SENDER, ["busy@dest.test"], message("first"))
    await mgr.wait_rounds(1)
    entry = await queued_or_none(env.admin, first)
    assert entry is not None and entry.recipients[0].last_error.startswith("421 4.7.28")
    throttle = mgr._rounds.throttle
    assert throttle.paused("dest.test") > 0 and throttle.limit("dest.test") == 1
    connections = env.rx.connections
    second = await mgr.enqueue(SENDER, ["bob@dest.test"], message("second"))
    await mgr.wait_rounds(2)
    entry = await queued_or_none(env.admin, second)
    assert entry is not None
    assert entry.recipients[0].last_error.startswith("451 4.4.5 dest.test asked us to slow down")
    assert env.rx.connections == connections  # not contacted while paused
