"""Nodes on one PostgreSQL database (issue #17 §2): the outbound queue's
leases (``SELECT ... FOR UPDATE SKIP LOCKED`` and an expiry), the change
feed over LISTEN/NOTIFY and the shared limit counters, on a throwaway cluster. A "node" here is what a
daemon holds: its own connections and its own owner name."""

from __future__ import annotations

import asyncio

import asyncpg

from mailserver.store.pg.blobs import PgBlobs
from mailserver.store.pg.changes import Change, ChangeListener, announce
from mailserver.store.pg.counters import PgCounters
from mailserver.store.pg.queue import PgQueue


async def _queue_messages(conn: asyncpg.Connection, n: int) -> None:
    blobs, queue = PgBlobs(), PgQueue("setup")
    for i in range(n):
        async with conn.transaction():
            blob = await blobs.add(conn, b"message %d\r\n" % i)
            await queue.add(conn, f"Q{i:04d}", b"record", blob, next_attempt=0.0)


async def test_two_nodes_never_lease_one_message(db: str) -> None:
    setup = await asyncpg.connect(db)
    await _queue_messages(setup, 60)
    nodes = [PgQueue(f"node-{k}") for k in range(2)]
    conns = [await asyncpg.connect(db) for _ in nodes]
    taken: dict[str, list[str]] = {q.owner: [] for q in nodes}

    async def work(q: PgQueue, conn: asyncpg.Connection) -> None:
        while leased := await q.lease(conn, 4):
            for m in leased:
                taken[q.owner].append(m.queue_id)
                async with conn.transaction():
                    assert await q.settle(conn, m.queue_id)  # delivered: removed
            await asyncio.sleep(0)

    try:
        # While node 0 holds four, node 1 gets four others.
        first = [await q.lease(c, 4) for q, c in zip(nodes, conns, strict=True)]
        assert len({m.queue_id for held in first for m in held}) == 8
        for q, c, held in zip(nodes, conns, first, strict=True):
            for m in held:
                taken[q.owner].append(m.queue_id)
                assert await q.settle(c, m.queue_id)
        await asyncio.gather(*(work(q, c) for q, c in zip(nodes, conns, strict=True)))
        every = taken["node-0"] + taken["node-1"]
        assert sorted(every) == [f"Q{i:04d}" for i in range(60)]  # each exactly once
        assert await nodes[0].size(setup) == 0
    finally:
        for c in (setup, *conns):
            await c.close()


async def test_a_dead_nodes_messages_go_to_another_after_its_lease(db: str) -> None:
    setup = await asyncpg.connect(db)
    await _queue_messages(setup, 3)
    now = [1000.0]
    a = PgQueue("node-a", lease_seconds=60, clock=lambda: now[0])
    b = PgQueue("node-b", lease_seconds=60, clock=lambda: now[0])
    conn_a, conn_b = await asyncpg.connect(db), await asyncpg.connect(db)
    try:
        held = await a.lease(conn_a, 10)
        assert len(held) == 3
        await conn_a.close()  # node A is killed mid-delivery: nothing settled
        assert await b.lease(conn_b, 10) == []  # A's leases still run
        now[0] += 61
        again = await b.lease(conn_b, 10)
        assert sorted(m.queue_id for m in again) == ["Q0000", "Q0001", "Q0002"]
        async with conn_b.transaction():
            assert await b.settle(conn_b, "Q0000")
            assert await b.settle(conn_b, "Q0001", record=b"retry", next_attempt=now[0] + 600)
        # A comes back late: its lease is gone, it may not settle what B holds.
        conn_a = await asyncpg.connect(db)
        async with conn_a.transaction():
            assert not await a.settle(conn_a, "Q0002")
        assert await a.renew(conn_a, "Q0002") is False
        assert await b.renew(conn_b, "Q0002") is True
        assert await b.size(conn_b) == 2
    finally:
        for c in (setup, conn_a, conn_b):
            await c.close()


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
