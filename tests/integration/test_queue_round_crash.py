"""A delivery round that crashes (a bug) counts as an attempt, is logged with its
traceback, and the maximum age still ends the message with a DSN.

The crash comes from a collaborator at the queue's edge: the DKIM key lookup
the composition root passes in raises.  The clock is the manager's injected
one, so "past the maximum age" needs no waiting.
"""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs
from support.outbound import LocalSink, is_local, queue_admin

from mailserver.app import resolver_for
from mailserver.queue.manager import QueueManager
from mailserver.queue.model import RcptStatus
from mailserver.queue.settings import OutboundSettings
from mailserver.store.api import LmdbQueue
from mailserver.store.store import Store

SENDER = "alice@example.test"
BODY = (b"From: alice@example.test\r\nTo: bob@dest.test\r\nSubject: crash\r\n"
        b"Message-ID: <crash@example.test>\r\n\r\nbody\r\n")


async def test_crashing_round_counts_and_max_age_ends_it(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    local = LocalSink()

    def broken_keys(domain: str) -> list[object]:
        raise RuntimeError("bug in the key lookup")

    settings = OutboundSettings(hostname="mail.example.test", resolver_address="127.0.0.1",
                                backoff=(60.0,), jitter=0.0, max_age=3600.0,
                                delay_warning=None)
    store = await Store.open(tmp_path)
    mgr = QueueManager(LmdbQueue(store), settings, resolver=resolver_for(settings),
                       dkim_keys=broken_keys,  # type: ignore[arg-type]
                       is_local=is_local, deliver_local=local.deliver, clock=lambda: now[0])
    admin = queue_admin(store, mgr, clock=lambda: now[0])
    try:
        with capture_logs() as logs:
            await mgr.start()
            qid = await mgr.enqueue(SENDER, ["bob@dest.test"], BODY)
            await mgr.wait_rounds(1)
            rec = await admin.queued(qid)
            assert rec.attempts == 1
            (r,) = rec.recipients
            assert r.status == RcptStatus.DEFERRED.value and r.attempts == 1
            assert r.last_error.startswith("451 4.3.0")
            assert rec.next_attempt == now[0] + 60.0  # the backoff applies
            crashed = [e for e in logs if e["event"] == "queue_round_crashed"]
            assert len(crashed) == 1
            assert crashed[0]["exc_info"] is True and crashed[0]["queue_id"] == qid

            now[0] += 2 * 3600.0  # past the maximum age
            await admin.retry(qid)
            await local.wait(1)
            await mgr.wait_idle()
        report, rcpt = local.messages[0]
        assert rcpt == SENDER and b"Action: failed" in report
        assert b"bob@dest.test" in report and b"gave up after 2 attempts" in report
        assert await admin.list_queue() == []
        assert len([e for e in logs if e["event"] == "queue_round_crashed"]) == 2
    finally:
        await mgr.stop()
        await store.close()
