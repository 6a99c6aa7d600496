"""Outbound delivery end to end: our DNS server, our receiving SMTP server, the real queue.

Every test runs a loopback DNS server (tests/support/dnsserver.py) serving MX,
A and TXT records for test domains, and a receiving aiosmtpd server on
127.0.0.1; the queue's resolver and remote SMTP port point at them.  Waiting
is on events (``Receiver.wait_for``, ``QueueManager.wait_rounds``), never sleeps.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import dkim
import pytest
from support.outbound import OutboundEnv, outbound_env, queued_or_none
from support.smtpreceiver import Receiver

from mailserver.dkim.keys import write_key
from mailserver.errors import NotFound
from mailserver.protocol.queue_id import new_queue_id
from mailserver.queue import model
from mailserver.queue.model import QueuedMessage, RcptStatus, Recipient
from mailserver.store.store import Store

SENDER = "alice@example.test"


def message(subject: str = "hello", to: str = "bob@dest.test") -> bytes:
    return (
        f"From: Alice <{SENDER}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{subject}@example.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Body line one.\r\n.leading dot line\r\n"
    ).encode()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[OutboundEnv]:
    async with outbound_env(tmp_path, OutboundEnv) as e:
        yield e


async def test_delivered_over_starttls_with_valid_rsa_and_ed25519_signatures(env: OutboundEnv) -> None:
    for sel, alg in (("rsa1", "rsa"), ("ed1", "ed25519")):
        _, txt = write_key(env.tmp, "example.test", sel, alg)
        env.dns.add(f"{sel}._domainkey.example.test", "TXT", txt)
        key = env.tmp / "dkim" / "example.test" / f"{sel}.key"
        assert key.stat().st_mode & 0o777 == 0o600
    mgr = await env.manager()
    original = message()
    qid = await mgr.enqueue(SENDER, ["bob@dest.test", "carol@dest.test"], original)
    (got,) = await env.rx.wait_for(1)
    assert got.mail_from == SENDER
    assert sorted(got.rcpt_tos) == ["bob@dest.test", "carol@dest.test"]  # one connection
    assert got.tls
    assert got.data.endswith(original)  # the body travelled unchanged (dot-stuffing undone)
    assert got.data.count(b"DKIM-Signature:") == 2
    for idx in (0, 1):
        assert await asyncio.to_thread(
            lambda i=idx: dkim.DKIM(got.data).verify(idx=i, dnsfunc=env.dns.txt_lookup))
    await mgr.wait_idle()
    assert await queued_or_none(env.admin, qid) is None  # done: removed, blob reference dropped
    assert env.store.blob_refcount(_sha(original)) == 0


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def test_tempfail_then_accept_is_delivered_on_retry(env: OutboundEnv) -> None:
    env.rx.tempfail_first = 1
    mgr = await env.manager()
    qid = await mgr.enqueue(SENDER, ["bob@dest.test"], message())
    await mgr.wait_rounds(1)
    rec = await queued_or_none(env.admin, qid)
    assert rec is not None and rec.recipients[0].status == RcptStatus.DEFERRED.value
    assert rec.recipients[0].last_error.startswith("451")
    await env.rx.wait_for(1)
    await mgr.wait_idle()
    assert await queued_or_none(env.admin, qid) is None
    assert env.local == []  # no DSN for a delivered message


async def test_550_gives_one_dsn_for_the_failed_recipient_only(env: OutboundEnv) -> None:
    env.rx.rcpt_replies["nobody@dest.test"] = "550 5.1.1 no such user"
    mgr = await env.manager()
    await mgr.enqueue(SENDER, ["bob@dest.test", "nobody@dest.test"], message("partial"))
    (got,) = await env.rx.wait_for(1)
    assert got.rcpt_tos == ["bob@dest.test"]
    await env.wait_local(1)
    report, rcpt = env.local[0]
    assert rcpt == SENDER
    msg = email.message_from_bytes(report, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert b"Final-Recipient: rfc822; nobody@dest.test" in report
    assert b"Status: 5.1.1" in report and b"Action: failed" in report
    assert b"bob@dest.test\r\nSubject: partial" in report  # original headers quoted
    await mgr.wait_idle()
    assert await env.admin.list_queue() == []


async def test_null_mx_fails_at_once_with_dsn(env: OutboundEnv) -> None:
    env.dns.add("nullmx.test", "MX", "0 .")
    mgr = await env.manager()
    await mgr.enqueue(SENDER, ["x@nullmx.test"], message())
    await env.wait_local(1)
    assert b"Status: 5.1.10" in env.local[0][0]
    assert env.rx.received == []


async def test_no_mx_uses_the_domain_address(env: OutboundEnv) -> None:
    env.dns.add("plain.test", "A", "127.0.0.1")
    mgr = await env.manager()
    await mgr.enqueue(SENDER, ["x@plain.test"], message())
    (got,) = await env.rx.wait_for(1)
    assert got.rcpt_tos == ["x@plain.test"]
    assert ("plain.test", "A") in env.dns.queries


async def test_unknown_domain_bounces(env: OutboundEnv) -> None:
    mgr = await env.manager()
    await mgr.enqueue(SENDER, ["x@nowhere.test"], message())
    await env.wait_local(1)
    assert b"Status: 5.1.2" in env.local[0][0]


async def test_unreachable_host_is_deferred(env: OutboundEnv) -> None:
    env.dns.add("down.test", "MX", "10 mx.down.test.")
    env.dns.add("mx.down.test", "A", "127.0.0.2")  # nothing listens there
    mgr = await env.manager(backoff=(3600.0,))
    qid = await mgr.enqueue(SENDER, ["x@down.test"], message())
    await mgr.wait_rounds(1)
    rec = await queued_or_none(env.admin, qid)
    assert rec is not None
    (r,) = rec.recipients
    assert r.status == RcptStatus.DEFERRED.value and r.attempts == 1
    assert r.last_error.startswith("421 4.4.2")
    assert rec.next_attempt > rec.created + 3000
    assert env.store.queue_due(rec.created + 60) == []
    assert env.local == []


async def test_mx_order_falls_back_to_next_host(env: OutboundEnv) -> None:
    env.dns.add("two.test", "MX", "5 dead.two.test.", "20 mx.dest.test.")
    env.dns.add("dead.two.test", "A", "127.0.0.2")
    mgr = await env.manager()
    await mgr.enqueue(SENDER, ["x@two.test"], message())
    (got,) = await env.rx.wait_for(1)
    assert got.rcpt_tos == ["x@two.test"]


async def test_require_tls_defers_when_starttls_is_not_offered(tmp_path: Path, env: OutboundEnv) -> None:
    plain = Receiver(host="127.0.0.3", port=env.rx.port)  # same port, another address, no TLS
    await plain.start()
    try:
        env.dns.add("tls.test", "MX", "10 mx.tls.test.")
        env.dns.add("mx.tls.test", "A", "127.0.0.3")
        mgr = await env.manager(require_tls=frozenset({"tls.test"}))
        qid = await mgr.enqueue(SENDER, ["x@tls.test"], message())
        await mgr.wait_rounds(1)
        rec = await queued_or_none(env.admin, qid)
        assert rec is not None and "STARTTLS" in rec.recipients[0].last_error
        assert plain.received == []
        await env.admin.delete_queued(qid)
    finally:
        await plain.stop()


async def test_remote_sender_gets_dsn_through_the_queue_and_dsn_never_bounces(env: OutboundEnv) -> None:
    env.rx.mode = "reject"
    env.dns.add("far.test", "MX", "10 mx.dest.test.")
    mgr = await env.manager()
    await mgr.enqueue("someone@far.test", ["x@dest.test"], message())
    # The DSN is queued with <> to someone@far.test, which the receiver rejects too:
    # that failure must not produce another DSN.
    await mgr.wait_rounds(2)
    await mgr.wait_idle()
    assert await env.admin.list_queue() == [] and env.local == []
    assert env.rx.rcpt_attempts == 2


async def test_restart_resumes_the_queue(env: OutboundEnv) -> None:
    env.rx.mode = "tempfail"
    mgr = await env.manager(backoff=(3600.0,))
    qid = await mgr.enqueue(SENDER, ["bob@dest.test"], message("resume"))
    await mgr.wait_rounds(1)
    await mgr.stop()
    await env.store.close()
    env.store = await Store.open(env.tmp)
    env.rx.mode = "accept"
    mgr2 = await env.manager(backoff=(3600.0,))
    assert [m.id for m in await env.admin.list_queue()] == [qid]
    assert await env.admin.flush() == 1
    (got,) = await env.rx.wait_for(1)
    assert b"Subject: resume" in got.data
    await mgr2.wait_idle()
    assert await env.admin.list_queue() == []


async def test_admin_retry_and_delete(env: OutboundEnv) -> None:
    env.rx.mode = "tempfail"
    mgr = await env.manager(backoff=(3600.0,))
    data = message("admin")
    qid = await mgr.enqueue(SENDER, ["bob@dest.test"], data)
    await mgr.wait_rounds(1)
    admin = env.admin
    await admin.retry(qid)  # due now, though the backoff said in an hour
    await mgr.wait_rounds(2)
    rec = await admin.queued(qid)
    assert rec.attempts == 2
    assert env.store.blob_refcount(_sha(data)) == 1
    await admin.delete_queued(qid)
    for action in (admin.delete_queued, admin.retry):
        with pytest.raises(NotFound):
            await action(qid)
    assert await queued_or_none(admin, qid) is None and env.store.blob_refcount(_sha(data)) == 0


async def test_admin_delete_cancels_the_round_in_flight(env: OutboundEnv) -> None:
    """Given the running manager as its queue control, the admin service stops a
    delivery round in progress before deleting: no round writes the message
    back or sends a DSN, and none is left waiting on the next hop."""
    ehlo = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hop ready\r\n")
        await reader.readline()
        ehlo.set()
        await reader.read()  # never answers EHLO: the round waits for the reply
        writer.close()

    hop = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        mgr = await env.manager(smtp_port=hop.sockets[0].getsockname()[1])
        qid = await mgr.enqueue(SENDER, ["bob@dest.test"], message("held"))
        await ehlo.wait()  # the round is in flight
        await env.admin.delete_queued(qid)
        assert mgr.rounds == 0 and not mgr._inflight  # cancelled, not finished
        assert await env.admin.list_queue() == [] and env.local == []
    finally:
        hop.close()


async def test_enqueue_refuses_bad_recipients(env: OutboundEnv) -> None:
    mgr = await env.manager()
    with pytest.raises(ValueError):
        await mgr.enqueue(SENDER, [], message())
    with pytest.raises(ValueError):
        await mgr.enqueue(SENDER, ["no-at-sign"], message())


async def test_enqueue_keeps_the_callers_id_and_refuses_a_bad_or_taken_one(
    env: OutboundEnv,
) -> None:
    mgr = env.unstarted_manager()
    qid = new_queue_id()  # as SMTP intake does: the id of its Received: and 250 reply
    assert await mgr.enqueue(SENDER, ["bob@dest.test"], message("given"), queue_id=qid) == qid
    rec = await queued_or_none(env.admin, qid)
    assert rec is not None and rec.id == qid
    for bad in ("", "a b", "x\r\nBcc: y", "../etc", "é"):
        with pytest.raises(ValueError):
            await mgr.enqueue(SENDER, ["bob@dest.test"], message(), queue_id=bad)
    with pytest.raises(RuntimeError):  # the store refuses a taken id
        await mgr.enqueue(SENDER, ["bob@dest.test"], message(), queue_id=qid)
    assert [m.id for m in await env.admin.list_queue()] == [qid]
    # Ids sort by creation time, so "queue list" (store key order) is oldest first.
    later = await mgr.enqueue(SENDER, ["bob@dest.test"], message("later"))
    assert [m.id for m in await env.admin.list_queue()] == [qid, later]


async def test_records_of_the_previous_version_load_and_deliver(env: OutboundEnv) -> None:
    """A store written before queue ids became the SMTP ids (20 hex digits of
    milliseconds and random bits, e.g. "01a24211d021f391b12b") still works:
    ids are opaque ASCII keys, listed, shown and delivered as they are."""
    created = time.time() - 60
    old_ids = [f"{int(created * 1000) + n:012x}{n:08x}" for n in range(2)]
    for n, old in enumerate(old_ids):
        data = message(f"old{n}")
        rec = QueuedMessage(id=old, reverse_path=SENDER, created=created,
                            blob_id=hashlib.sha256(data).digest(), size=len(data),
                            recipients=(Recipient("bob@dest.test"),), next_attempt=created)
        await env.store.queue_add(old, model.encode(rec), data, created)
    mgr = env.unstarted_manager()
    new = await mgr.enqueue(SENDER, ["bob@dest.test"], message("new"))
    assert [m.id for m in await env.admin.list_queue()] == [*old_ids, new]  # the old ones first
    shown = await queued_or_none(env.admin, old_ids[0])
    assert shown is not None and shown.id == old_ids[0]
    await mgr.start()
    got = await env.rx.wait_for(3)
    assert sorted(g.data.split(b"Subject: ")[1][:4] for g in got) == [b"new\r", b"old0", b"old1"]
    await mgr.wait_idle()
    assert await env.admin.list_queue() == [] and env.store.queue_due(time.time() + 1e6, 10) == []


def test_mx_order_by_preference_with_shuffled_ties() -> None:
    import random

    from mailserver.dns.mx import NullMx, order_mx
    from mailserver.dns.resolver import Mx

    records = [Mx(20, "c"), Mx(10, "a"), Mx(10, "b"), Mx(30, "a")]
    orders = {tuple(order_mx(records, random.Random(seed))) for seed in range(50)}
    assert orders == {("a", "b", "c"), ("b", "a", "c")}
    with pytest.raises(NullMx):
        order_mx([Mx(0, "")])


async def test_resolver_ttl_cache_and_tcp_fallback(env: OutboundEnv) -> None:
    from mailserver.dns.resolver import DnsError, DnsPythonResolver

    long_txt = "v=test; " + "x" * 2000  # beyond 512 octets: truncated over UDP, then TCP
    env.dns.add("big.test", "TXT", long_txt)
    res = DnsPythonResolver(env.dns.address, env.dns.port, timeout=5)
    assert await res.txt("big.test") == [long_txt]
    assert await res.mx("big.test") == []  # NODATA
    asked = len(env.dns.queries)
    assert await res.txt("big.test") == [long_txt]
    assert len(env.dns.queries) == asked  # answered from the cache
    with pytest.raises(DnsError) as info:
        await res.mx("missing.test")
    assert not info.value.temporary
    assert await res.addresses("mx.dest.test") == ["127.0.0.1"]


async def test_delay_warning_is_sent_once(env: OutboundEnv) -> None:
    env.rx.mode = "tempfail"
    mgr = await env.manager(backoff=(0.05,), delay_warning=0.0)
    qid = await mgr.enqueue(SENDER, ["bob@dest.test"], message("slow"))
    await mgr.wait_rounds(3)
    await env.admin.delete_queued(qid)
    assert len(env.local) == 1
    report = env.local[0][0]
    assert b"Action: delayed" in report and b"Status: 4.3.0" in report
    assert b"Will-Retry-Until: " in report
