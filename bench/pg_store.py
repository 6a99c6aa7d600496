"""The PostgreSQL store's building blocks, measured (issue #17 §2, §4)::

    python bench/pg_store.py [--messages 3000] [--sessions 20] [--size 4096] [--connections 1 4]

A throwaway PostgreSQL 15 cluster (``tests/support/postgres.py``: initdb
into a temporary directory, loopback port, default settings but
``shared_buffers = 16MB``; ``fsync`` and ``synchronous_commit`` on) on this
machine, schema v1.  Figures:

* **delivery transactions**: ``--sessions`` concurrent deliveries of one
  ``--size`` message to one mailbox each (the blob, UID and MODSEQ from the
  mailbox row's lock, the message row, the mailbox counters, a NOTIFY),
  through one node's group-commit writer (``PgWriter``, with each of
  ``--connections`` writer connections): messages per second, commits per
  second, messages per commit, and the p50/p99 of submit -> committed;
* **the change feed across nodes**: node A commits a delivery, node B's
  ``ChangeListener`` hears it: p50/p99 latency over ``--notifies`` changes.

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import asyncpg  # noqa: E402
from support.postgres import new_database, throwaway_postgres  # noqa: E402

from mailserver.store.pg.blobs import PgBlobs  # noqa: E402
from mailserver.store.pg.changes import Change, ChangeListener, announce  # noqa: E402
from mailserver.store.pg.writer import PgWriter  # noqa: E402


async def _setup(dsn: str, sessions: int) -> list[int]:
    conn = await asyncpg.connect(dsn)
    await conn.execute("INSERT INTO domains VALUES ('example.test')")
    ids = []
    for i in range(sessions):
        address = f"user{i}@example.test"
        await conn.execute("INSERT INTO accounts (address, domain, password_hash) "
                           "VALUES ($1, 'example.test', 'x')", address)
        ids.append(await conn.fetchval("INSERT INTO mailboxes (account, name, uidvalidity) "
                                       "VALUES ($1, 'INBOX', 1) RETURNING id", address))
    await conn.close()
    return ids


def _deliver(blobs: PgBlobs, mailbox: int, data: bytes) -> Any:
    async def write(conn: Any) -> int:
        blob_id = await blobs.add(conn, data)
        row = await conn.fetchrow("SELECT * FROM allocate_uids($1, 1)", mailbox)
        await conn.execute(
            "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, internal_date, size) "
            "VALUES ($1, $2, $3, $4, now(), $5)",
            mailbox, row["first_uid"], row["modseq"], blob_id, len(data))
        await conn.execute("UPDATE mailboxes SET messages = messages + 1, "
                           "unseen = unseen + 1, size = size + $2 WHERE id = $1",
                           mailbox, len(data))
        await announce(conn, Change("mailbox", mailbox, row["modseq"]))
        return int(row["first_uid"])
    return write


def _q(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] * 1000 if len(samples) > 1 else 0.0


async def deliveries(dsn: str, messages: int, sessions: int, size: int,
                     connections: int) -> dict[str, float]:
    mailboxes = await _setup(dsn, sessions)
    writer = PgWriter(dsn, connections=connections)
    await writer.start()
    blobs = PgBlobs()
    latencies: list[float] = []
    per_session = messages // sessions

    async def session(k: int) -> None:
        for i in range(per_session):
            data = (b"Subject: bench %d %d\r\n\r\n" % (k, i)) + b"x" * size
            t = time.perf_counter()
            await writer.submit(_deliver(blobs, mailboxes[k], data))
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(session(k) for k in range(sessions)))
    elapsed = time.perf_counter() - start
    await writer.stop()
    done = per_session * sessions
    return {"messages": done, "seconds": elapsed, "msg_s": done / elapsed,
            "commits_s": writer.commits / elapsed, "per_commit": done / writer.commits,
            "p50": _q(latencies, 50), "p99": _q(latencies, 99)}


async def feed(dsn: str, count: int) -> dict[str, float]:
    heard: dict[int, float] = {}
    got = asyncio.Event()

    def on_change(change: Change) -> None:
        heard[change.modseq] = time.perf_counter()
        got.set()

    listener = ChangeListener(dsn, on_change)
    await listener.start()
    node_a = await asyncpg.connect(dsn)
    mailbox = (await _setup_one(node_a))
    latencies = []
    blobs = PgBlobs()
    for i in range(count):
        got.clear()
        async with node_a.transaction():
            await _deliver(blobs, mailbox, b"Subject: feed %d\r\n\r\nx\r\n" % i)(node_a)
            modseq = await node_a.fetchval("SELECT highestmodseq FROM mailboxes WHERE id = $1",
                                           mailbox)
        committed = time.perf_counter()
        while modseq not in heard:
            await asyncio.wait_for(got.wait(), 10)
            got.clear()
        latencies.append(heard[modseq] - committed)
    await node_a.close()
    await listener.stop()
    return {"p50": _q(latencies, 50), "p99": _q(latencies, 99), "count": count}


async def _setup_one(conn: Any) -> int:
    await conn.execute("INSERT INTO domains VALUES ('feed.test') ON CONFLICT DO NOTHING")
    await conn.execute("INSERT INTO accounts (address, domain, password_hash) "
                       "VALUES ('idle@feed.test', 'feed.test', 'x')")
    return int(await conn.fetchval("INSERT INTO mailboxes (account, name, uidvalidity) "
                                   "VALUES ('idle@feed.test', 'INBOX', 1) RETURNING id"))


async def run(args: argparse.Namespace) -> None:
    with throwaway_postgres() as cluster:
        runs = []
        for connections in args.connections:
            async with new_database(cluster) as dsn:
                runs.append((connections, await deliveries(
                    dsn, args.messages, args.sessions, args.size, connections)))
        async with new_database(cluster) as dsn:
            f = await feed(dsn, args.notifies)
    print(f"| PostgreSQL 15, one node, {args.sessions} sessions, {args.size} octets | value |")
    print("|---|---:|")
    for connections, d in runs:
        print(f"| deliveries, {connections} writer connection(s) | {d['msg_s']:,.0f} msg/s; "
              f"{d['commits_s']:,.0f} commits/s of {d['per_commit']:.1f} messages; "
              f"submit -> committed p50 {d['p50']:.2f} ms, p99 {d['p99']:.2f} ms |")
    print(f"| node A commit -> node B hears (LISTEN/NOTIFY), {f['count']:.0f} changes | "
          f"p50 {f['p50']:.2f} ms, p99 {f['p99']:.2f} ms |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--notifies", type=int, default=300)
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
