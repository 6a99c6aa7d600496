"""Where outbound mail goes and how many connections it opens there.

* IP addresses are used as they are, never looked up: a smart host given by
  address, an MX record holding an address (a misconfiguration RFC 5321 §5.1
  forbids; like Postfix we use the address), an address-literal recipient
  (RFC 5321 §4.1.3).  The DNS server records every query it gets.
* ``max_connections_per_domain`` limits the sessions per route: with a smart
  host, all recipient domains share it, and the relay (our receiver, which
  records the most connections open at once) never sees more.
* A server that refuses EHLO gets HELO (RFC 5321 §4.1.4).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.outbound import OutboundEnv, outbound_env, outbound_settings, queued_or_none

from mailserver.queue.manager import QueueManager
from mailserver.queue.model import RcptStatus
from mailserver.queue.settings import SmartHost

SENDER = "alice@example.test"


def message(subject: str) -> bytes:
    return (f"From: {SENDER}\r\nTo: someone@dest.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.test>\r\n\r\nbody of {subject}\r\n").encode()


class Env(OutboundEnv):
    def relay_by_ip(self, **kw: object) -> QueueManager:
        """All mail to the receiver as a smart host given by address; smtp_port 9
        (discard), so an MX delivery could not reach the receiver."""
        sh = SmartHost("127.0.0.1", self.rx.port, "none")
        return self.new_manager(outbound_settings(self.dns, 9, smart_host=sh, **kw))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with outbound_env(tmp_path, Env) as e:
        e.dns.queries.clear()
        yield e


async def test_smart_host_by_ip_is_not_looked_up(env: Env) -> None:
    mgr = env.relay_by_ip()
    await mgr.enqueue(SENDER, ["bob@far-away.test", "carol@other.test"], message("by-ip"))
    await mgr.start()
    got = await env.rx.wait_for(2)
    assert sorted(r for g in got for r in g.rcpt_tos) == ["bob@far-away.test",
                                                           "carol@other.test"]
    await mgr.wait_idle()
    assert await env.admin.list_queue() == []
    assert env.dns.queries == []


@pytest.mark.parametrize("reuse_idle", [0.0, 5.0])
async def test_many_domains_through_one_smart_host_stay_under_the_limit(
    env: Env, reuse_idle: float
) -> None:
    env.rx.tls_dir = None
    mgr = env.relay_by_ip(max_connections_per_domain=2, max_connections=20,
                          reuse_idle=reuse_idle)
    domains = [f"d{i}.test" for i in range(8)]
    for n in range(3):  # three messages, each to eight domains: 24 transactions at once
        await mgr.enqueue(SENDER, [f"u{n}@{d}" for d in domains], message(f"fan{n}"))
    await mgr.start()
    got = await env.rx.wait_for(24)
    assert len({r for g in got for r in g.rcpt_tos}) == 24
    await mgr.wait_idle()
    assert await env.admin.list_queue() == []
    assert env.rx.peak == 2
    if reuse_idle:
        assert env.rx.connections == 2  # the two sessions carried every message


async def test_mx_by_domain_keeps_its_limit_per_domain(env: Env) -> None:
    # Without a smart host the limit stays per recipient domain: two domains
    # served by one MX host may together open twice the limit.
    env.dns.add("second.test", "MX", "10 mx.dest.test.")
    mgr = env.unstarted_manager(max_connections_per_domain=1)
    for n in range(3):
        await mgr.enqueue(SENDER, [f"u{n}@dest.test", f"u{n}@second.test"], message(f"mx{n}"))
    await mgr.start()
    await env.rx.wait_for(6)
    await mgr.wait_idle()
    assert 1 <= env.rx.peak <= 2


async def test_mx_record_holding_an_address_is_used_as_is(env: Env) -> None:
    env.dns.add("numeric.test", "MX", "10 127.0.0.1.")
    mgr = env.unstarted_manager()
    qid = await mgr.enqueue(SENDER, ["bob@numeric.test"], message("numeric-mx"))
    await mgr.start()
    (got,) = await env.rx.wait_for(1)
    assert got.rcpt_tos == ["bob@numeric.test"]
    await mgr.wait_idle()
    assert await queued_or_none(env.admin, qid) is None
    assert env.dns.queries == [("numeric.test", "MX")]  # no A/AAAA for "127.0.0.1"


async def test_address_literal_recipient_goes_to_that_address(env: Env) -> None:
    mgr = env.unstarted_manager()
    await mgr.enqueue(SENDER, ["bob@[127.0.0.1]"], message("literal"))
    await mgr.start()
    (got,) = await env.rx.wait_for(1)
    assert got.rcpt_tos == ["bob@[127.0.0.1]"]
    await mgr.wait_idle()
    assert await env.admin.list_queue() == []
    assert env.dns.queries == []


async def test_malformed_address_literal_fails_without_dns(env: Env) -> None:
    mgr = env.unstarted_manager()
    qid = await mgr.enqueue(SENDER, ["bob@[300.1.2.3]", "carol@[2001:db8::1]"],
                            message("bad-literal"))
    await mgr.start()
    await env.wait_local(1)  # the DSN to our own sender
    await mgr.wait_idle()
    assert await queued_or_none(env.admin, qid) is None
    dsn = env.local[0][0]
    assert b"bob@[300.1.2.3]" in dsn and b"carol@[2001:db8::1]" in dsn
    assert b"5.1.2" in dsn
    assert env.dns.queries == [] and env.rx.connections == 0


async def test_server_refusing_ehlo_gets_helo(env: Env) -> None:
    env.rx.ehlo = False
    mgr = env.unstarted_manager()
    qid = await mgr.enqueue(SENDER, ["bob@dest.test", "carol@dest.test"], message("helo"))
    await mgr.start()
    (got,) = await env.rx.wait_for(1)
    assert got.rcpt_tos == ["bob@dest.test", "carol@dest.test"] and not got.tls
    await mgr.wait_idle()
    rec = await queued_or_none(env.admin, qid)
    assert rec is None or all(r.status == RcptStatus.DELIVERED.value for r in rec.recipients)
    verbs = [chunk.split(b" ")[0] for chunk in env.rx.reads[0]]
    assert verbs[:2] == [b"EHLO", b"HELO"]
    assert b"MAIL" in verbs and b"RCPT" in verbs  # one command per read: no PIPELINING
