"""One set of tests, two backends (issue #17 §3): the outbound queue's store
(``queue.storage.QueueStore``) on LMDB (``store.api.LmdbQueue``) and on
PostgreSQL (``store.pg.queue.PgQueueStore``, a throwaway cluster), held to the
same answers; then the queue manager itself on PostgreSQL, as two nodes'
schedulers delivering one queue to a real SMTP receiver, each message once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from support.dnsserver import DnsServer
from support.outbound import outbound_settings
from support.postgres import new_database, writer_and_pool
from support.smtpreceiver import Receiver

from mailserver.app import resolver_for
from mailserver.errors import NotFound
from mailserver.queue.manager import QueueManager
from mailserver.queue.storage import QueueStore
from mailserver.store.api import LmdbQueue
from mailserver.store.pg.queue import HELD, PgQueueStore
from mailserver.store.store import Store

NOW = 1_800_000_000.0


@asynccontextmanager
async def pg_node(dsn: str, name: str) -> AsyncIterator[PgQueueStore]:
    """A node's view of the queue: its own writer, pool and lease name."""
    async with writer_and_pool(dsn, pool_size=2) as (writer, pool):
        yield PgQueueStore(writer, pool, owner=name)


@pytest.fixture(params=["lmdb", "postgresql"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueStore]:
    if request.param == "lmdb":
        store = await Store.open(tmp_path / "store")
        try:
            yield LmdbQueue(store)
        finally:
            await store.close()
        return
    async with new_database(request.getfixturevalue("cluster")) as dsn, \
            pg_node(dsn, "node") as q:
        yield q


async def test_add_due_get_and_blobs(queue: QueueStore) -> None:
    blob_id = await queue.queue_add("A1", b"rec-a", b"octets a\r\n", NOW + 5)
    await queue.queue_add("B2", b"rec-b", b"octets b\r\n", NOW)
    with pytest.raises(RuntimeError):
        await queue.queue_add("A1", b"again", b"other\r\n", NOW)
    assert await queue.get_blob(blob_id) == b"octets a\r\n"
    with pytest.raises(NotFound):
        await queue.get_blob(b"\0" * 32)
    assert await queue.queue_due(NOW, 10) == ["B2"]
    assert await queue.queue_due(NOW + 5, 10) == ["B2", "A1"]  # earliest first
    assert await queue.queue_due(NOW + 5, 1) == ["B2"]
    assert await queue.queue_next_due() == NOW
    assert await queue.queue_get("A1") == b"rec-a"
    assert await queue.queue_get("nope") is None


async def test_lease_and_settle(queue: QueueStore) -> None:
    await queue.queue_add("A1", b"rec", b"octets\r\n", NOW)
    assert not await queue.queue_lease("A1", b"early", NOW + 60, due_by=NOW - 1)  # not due
    assert await queue.queue_lease("A1", b"leased", NOW + 60, due_by=NOW)
    assert await queue.queue_get("A1") == b"leased"
    assert await queue.queue_due(NOW + 59, 10) == []  # due again when the lease ends
    assert not await queue.queue_lease("A1", b"twice", NOW + 60, due_by=NOW)
    assert await queue.queue_settle("A1", b"retry later", NOW + 600)
    assert await queue.queue_next_due() == NOW + 600
    # A hold made while a round runs survives its settle; held mail is never due.
    assert await queue.queue_lease("A1", b"leased", NOW + 660, due_by=NOW + 600)
    assert await queue.queue_reschedule(["A1", "nope"], HELD, only_later=False) == ["A1"]
    assert await queue.queue_settle("A1", b"result", NOW + 700)
    assert await queue.queue_get("A1") == b"result"
    assert await queue.queue_due(HELD - 1, 10) == []
    assert not await queue.queue_lease("A1", b"x", HELD + 1, due_by=HELD + 1)
    # Released (retry): due now; only_later leaves an earlier one alone.
    await queue.queue_reschedule(["A1"], NOW, only_later=False)
    await queue.queue_reschedule(["A1"], NOW + 999)
    assert await queue.queue_due(NOW, 10) == ["A1"]
    assert await queue.queue_lease("A1", b"leased", NOW + 60, due_by=NOW)
    assert await queue.queue_settle("A1", None)  # done: removed with its blob reference
    assert await queue.queue_get("A1") is None and await queue.queue_next_due() is None
    assert not await queue.queue_settle("A1", None)
    assert not await queue.queue_settle("A1", b"gone", NOW)


async def test_two_nodes_schedulers_deliver_each_message_once(
        cluster: str, tmp_path: Path) -> None:
    """Two queue managers (two nodes) on one database: every message reaches the
    receiver exactly once, both nodes take part, and the queue ends empty."""
    rx = Receiver()
    await rx.start()
    dns = DnsServer()
    dns.start()
    dns.add("dest.test", "MX", "10 mx.dest.test.")
    dns.add("mx.dest.test", "A", "127.0.0.1")
    settings = outbound_settings(dns, rx.port)
    count = 30
    try:
        async with new_database(cluster) as dsn, pg_node(dsn, "node-a") as qa, \
                pg_node(dsn, "node-b") as qb:
            managers = [QueueManager(q, settings, resolver=resolver_for(settings))
                        for q in (qa, qb)]
            for i in range(count):  # queued through either node
                body = b"Message-ID: <m%d@example.test>\r\nSubject: %d\r\n\r\nhi\r\n" % (i, i)
                await managers[i % 2].enqueue("alice@example.test", ["bob@dest.test"], body)
            try:
                for m in managers:
                    await m.start()
                got = await rx.wait_for(count, timeout=60)
                async with asyncio.timeout(30):
                    while await qa.queue_next_due() is not None:
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.2)  # a duplicate would have arrived by now
            finally:
                for m in managers:
                    await m.stop()
            ids = sorted(r.data.split(b"\r\n", 1)[0] for r in rx.received)
            assert len(got) == count
            assert ids == sorted(b"Message-ID: <m%d@example.test>" % i for i in range(count))
            assert managers[0].rounds + managers[1].rounds == count
    finally:
        dns.stop()
        await rx.stop()
