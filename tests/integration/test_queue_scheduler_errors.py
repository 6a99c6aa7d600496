"""The outbound queue's scheduler survives errors.

The scheduler must survive what it cannot handle: an undecodable queue
record is logged once and set aside (not retried in a hot loop, not fatal to
the other messages), an unexpected error in a pass is logged with its
traceback and retried after a backoff, and ``stop()`` never re-raises.
The failures come from real data (a damaged record written to the real
store) or from the manager's injected clock; nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from structlog.testing import capture_logs
from support.outbound import queue_admin
from support.server import LOOPBACK_ONLY_OUTBOUND

from mailserver.app import resolver_for
from mailserver.queue.manager import QueueManager
from mailserver.store.api import LmdbQueue
from mailserver.store.store import Store

#: Lookups go to the discard port on loopback and time out quickly: each round
#: ends "deferred" without leaving the machine.
SETTINGS = dataclasses.replace(LOOPBACK_ONLY_OUTBOUND, dns_timeout=0.5)
BODY = b"From: a@example.test\r\nSubject: q\r\n\r\nhi\r\n"


async def test_undecodable_record_is_set_aside_and_the_rest_delivered(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    mgr = QueueManager(LmdbQueue(store), SETTINGS, resolver=resolver_for(SETTINGS))
    admin = queue_admin(store, mgr)
    try:
        now = time.time()
        # E.g. written by a newer version, or torn by a bad schema change.
        await store.queue_add("00000000000BAD", b"\xff not a record", b"x", now)
        with capture_logs() as logs:
            await mgr.start()
            qid = await mgr.enqueue("a@example.test", ["r@remote.example"], BODY)
            async with asyncio.timeout(30):
                await mgr.wait_rounds(1)
            assert mgr._runner is not None and not mgr._runner.done()
            assert (await admin.queued(qid)).attempts == 1
            # Listing (CLI `queue list`, flush) skips it instead of failing.
            assert [m.id for m in await admin.list_queue()] == [qid]
            assert await admin.flush() == 1
            async with asyncio.timeout(30):
                await mgr.wait_rounds(2)
        unreadable = [e for e in logs if e["event"] == "queue_record_unreadable"
                      and e["queue_id"] == "00000000000BAD"]
        assert len(unreadable) == 1, "logged once, then skipped (no hot loop)"
        assert unreadable[0]["exc_info"] is True
        assert not [e for e in logs if e["event"] == "queue_scheduler_error"]
        # Set aside in the store too: due again only max_age later, so another
        # process (or this one after a restart) does not spin on it either.
        assert "00000000000BAD" not in store.queue_due(now + SETTINGS.max_age - 60)
        assert store.queue_get("00000000000BAD") == b"\xff not a record"  # kept for the operator
    finally:
        await mgr.stop()  # must not raise
        await store.close()


async def test_scheduler_pass_error_is_logged_and_retried(tmp_path: Path) -> None:
    fail = [0]

    def clock() -> float:
        if fail[0]:
            fail[0] -= 1
            raise RuntimeError("clock went away")
        return time.time()

    store = await Store.open(tmp_path)
    mgr = QueueManager(LmdbQueue(store), SETTINGS, resolver=resolver_for(SETTINGS), clock=clock)
    try:
        qid = await mgr.enqueue("a@example.test", ["r@remote.example"], BODY)
        with capture_logs() as logs:
            fail[0] = 1  # the scheduler's first pass raises
            await mgr.start()
            async with asyncio.timeout(30):
                await mgr.wait_rounds(1)  # before the fix: the scheduler was dead
        errors = [e for e in logs if e["event"] == "queue_scheduler_error"]
        assert len(errors) == 1
        assert errors[0]["exc_info"] is True and errors[0]["failures"] == 1
        assert errors[0]["retry_in"] > 0  # backoff, not a hot loop
        assert (await queue_admin(store, mgr).queued(qid)).attempts == 1
        assert mgr._runner is not None and not mgr._runner.done()
    finally:
        await mgr.stop()
        await store.close()
