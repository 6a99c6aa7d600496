"""Nodes on one PostgreSQL database (issue #17 §2): the outbound queue's
leases (``queue.storage.QueueStore`` on ``PgQueueStore``), the change
feed over LISTEN/NOTIFY and the shared limit counters, on a throwaway cluster. A "node" here is what a
daemon holds: its own connections and its own owner name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from support.postgres import writer_and_pool

from mailserver.store.pg.blobs import PgBlobs, blob_id_of
from mailserver.store.pg.changes import Change, ChangeListener, announce
from mailserver.store.pg.counters import PgCounters
from mailserver.store.pg.queue import HELD, PgQueueStore


@asynccontextmanager
async def node(db: str, name: str) -> AsyncIterator[PgQueueStore]:
    """What a daemon holds of the queue: its writer, its pool, its lease name."""
    async with writer_and_pool(db, pool_size=2) as (writer, pool):
        yield PgQueueStore(writer, pool, owner=name)


async def _queue_messages(q: PgQueueStore, n: int, due: float = 0.0) -> None:
    for i in range(n):
        await q.queue_add(f"Q{i:04d}", b"record", b"message %d\r\n" % i, due)


async def test_two_nodes_never_lease_one_message(db: str) -> None:
    async with node(db, "node-0") as a, node(db, "node-1") as b:
        await _queue_messages(a, 60)
        with pytest.raises(RuntimeError):
            await b.queue_add("Q0000", b"again", b"other octets", 0.0)  # ids are unique
        taken: dict[str, list[str]] = {a.owner: [], b.owner: []}
        now = 1000.0

        async def work(q: PgQueueStore) -> None:
            while due := await q.queue_due(now, 4):
                for qid in due:  # both nodes see the same due ids: the lease decides
                    if await q.queue_lease(qid, b"leased", now + 300, due_by=now):
                        taken[q.owner].append(qid)
                        assert await q.queue_settle(qid, None)  # delivered: removed
                await asyncio.sleep(0)

        await asyncio.gather(work(a), work(b))
        every = taken["node-0"] + taken["node-1"]
        assert sorted(every) == [f"Q{i:04d}" for i in range(60)]  # each exactly once
        assert taken["node-0"] and taken["node-1"]  # both took part
        assert await a.queue_next_due() is None
        async with a._pool.acquire() as conn:
            assert await PgBlobs().refs(conn, blob_id_of(b"message 0\r\n")) == 0


async def test_a_dead_nodes_messages_go_to_another_after_its_lease(db: str) -> None:
    now = 1000.0
    async with node(db, "node-a") as a, node(db, "node-b") as b:
        await _queue_messages(a, 3)
        for qid in await a.queue_due(now, 10):
            assert await a.queue_lease(qid, b"try 1", now + 60, due_by=now)
        # Node A is killed mid-delivery: nothing settled.  B sees nothing due
        # while A's leases run, and cannot lease what A holds.
        assert await b.queue_due(now, 10) == []
        assert not await b.queue_lease("Q0000", b"x", now + 60, due_by=now)
        later = now + 61
        again = await b.queue_due(later, 10)
        assert again == ["Q0000", "Q0001", "Q0002"]
        for qid in again:
            assert await b.queue_lease(qid, b"try 2", later + 600, due_by=later)
        assert await b.queue_settle("Q0000", None)
        assert await b.queue_settle("Q0001", b"retry", later + 900)
        assert await b.queue_get("Q0001") == b"retry"
        assert await a.queue_next_due() == later + 600  # Q0002, still B's lease
        # A comes back late: its lease is gone, it may not settle what B holds.
        assert not await a.queue_settle("Q0002", None)
        assert not await a.queue_settle("Q0002", b"stale", later)
        assert await b.queue_get("Q0002") == b"try 2"
        # A hold made during B's round survives B's settle; nobody leases it.
        await b.queue_reschedule(["Q0002"], HELD, only_later=False)
        assert await b.queue_settle("Q0002", b"held now", later + 60)
        assert await a.queue_due(HELD - 1, 10) == ["Q0001"]
        assert not await a.queue_lease("Q0002", b"x", HELD + 1, due_by=HELD + 1)
        assert await a.queue_reschedule(["Q0001", "nope"], 0.0) == ["Q0001"]
        assert await a.queue_due(1.0, 10) == ["Q0001"]


async def test_node_b_hears_node_a_commit_and_nothing_rolled_back(db: str) -> None:
    heard: asyncio.Queue[Change] = asyncio.Queue()
    listener = ChangeListener(db, heard.put_nowait)
    await listener.start()
    node_a = await asyncpg.connect(db)
    try:
        tx = node_a.transaction()
        await tx.start()
        await announce(node_a, Change("mailbox", 7, 41))
        await tx.rollback()  # a delivery that failed: no one hears of it
        async with node_a.transaction():
            await announce(node_a, Change("mailbox", 7, 42))
            await asyncio.sleep(0.05)
            assert heard.empty()  # not before the commit
        got = await asyncio.wait_for(heard.get(), 10)
        assert got == Change("mailbox", 7, 42)
        assert heard.empty()
        assert Change.parse("garbage") is None and Change.parse("queue:0:0") == Change("queue", 0, 0)
    finally:
        await node_a.close()
        await listener.stop()


async def test_a_limit_holds_across_nodes(db: str) -> None:
    counters = PgCounters(window=60)
    conns = [await asyncpg.connect(db) for _ in range(3)]
    now = 6000.0  # the start of a window

    async def node(conn: asyncpg.Connection) -> int:
        ok = 0
        for _ in range(10):
            ok += await counters.count(conn, "msg:192.0.2.1", now, limit=12)
        return ok

    try:
        assert sum(await asyncio.gather(*(node(c) for c in conns))) == 12  # of 30 tries
        assert await counters.peek(conns[0], "msg:192.0.2.1", now) == 12
        # Half a window later the previous window weighs half: 6 of 12 room again.
        later = now + 60 + 30
        assert await counters.peek(conns[0], "msg:192.0.2.1", later) == 6
        granted = [await counters.count(conns[1], "msg:192.0.2.1", later, limit=12)
                   for _ in range(8)]
        assert granted.count(True) == 6
        assert await counters.count(conns[2], "other", later)  # no limit: always
        assert await counters.prune(conns[0], later + 120) == 3
        assert await counters.reset(conns[0], "msg:192.0.2.1") == 0
    finally:
        for c in conns:
            await c.close()


async def test_rate_limits_hold_across_nodes_all_or_nothing(db: str) -> None:
    """The daemon's rates on PostgreSQL (``PgSharedCounters``): a per-minute limit
    of 12 lets 12 MAILs through across two nodes, and a call that would pass
    one of its windows counts none of them."""
    from mailserver.config import Limits
    from mailserver.counters.pg import PgSharedCounters

    pools = [await asyncpg.create_pool(db, min_size=1, max_size=2) for _ in range(2)]
    now = [7200.0]
    nodes = [PgSharedCounters(Limits(), p, clock=lambda: now[0]) for p in pools]
    try:
        checks = (("minute", 12, "msg:192.0.2.7"),)

        async def mails(c: PgSharedCounters) -> int:
            return sum([await c.rate(checks) for _ in range(15)])

        assert sum(await asyncio.gather(*(mails(c) for c in nodes))) == 12
        assert await nodes[1].peek("minute", "msg:192.0.2.7") == 12
        both = (("minute", 100, "rcpt:192.0.2.7"), ("day", 1, "newrcpt:alice"))
        assert await nodes[0].rate(both)
        assert not await nodes[1].rate(both)  # the day's 1 is used: nothing counted
        assert await nodes[0].peek("minute", "rcpt:192.0.2.7") == 1
        # n = 0 asks without counting (the failed-login check, ``counters.logins``).
        assert not await nodes[0].rate((("day", 0, "newrcpt:alice"),), 0)
        assert await nodes[0].rate((("day", 1, "newrcpt:alice"),), 0)
        now[0] += 2 * 60  # two minutes on: the minute windows no longer weigh in
        assert await nodes[1].rate(checks)
    finally:
        for p in pools:
            await p.close()


async def test_nodes_share_one_secret(db: str) -> None:
    """The SRS key (``PgNode.shared_secret``): made by the first node that asks,
    the same for every node, and kept."""
    from mailserver.store.pg.node import PgNode

    nodes = [PgNode(db, writer_connections=1) for _ in range(2)]
    for n in nodes:
        await n.open()
    try:
        got = await asyncio.gather(*(n.shared_secret("srs") for n in nodes))
        assert got[0] == got[1] and len(got[0]) == 32
        assert await nodes[1].shared_secret("srs") == got[0]
        assert await nodes[0].shared_secret("other") != got[0]
    finally:
        for n in nodes:
            await n.close()
