"""Group commit on PostgreSQL (issue #17 §2): concurrent requests share
transactions, each answered only after its transaction committed; a failing
request is rolled back alone; a database that would acknowledge commits
before they are on disk is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from support.postgres import new_database

from mailserver.store.pg.writer import NotDurable, PgWriter


async def test_concurrent_requests_share_commits_and_fail_alone(db: str) -> None:
    writer = PgWriter(db)
    await writer.start()
    reader = await asyncpg.connect(db)
    try:
        async def add(i: int) -> int:
            async def fn(conn: Any) -> int:
                if i == 13:
                    await conn.execute("INSERT INTO domains VALUES ('BAD UPPER CASE')")  # CHECK
                await conn.execute("INSERT INTO domains VALUES ($1)", f"d{i}.test")
                # Not visible to others before the commit that answers us.
                seen = await reader.fetchval("SELECT count(*) FROM domains WHERE name = $1",
                                             f"d{i}.test")
                assert seen == 0
                return i
            return await writer.submit(fn)

        results = await asyncio.gather(*(add(i) for i in range(40)), return_exceptions=True)
        assert isinstance(results[13], asyncpg.CheckViolationError)
        assert [r for i, r in enumerate(results) if i != 13] == [i for i in range(40) if i != 13]
        names = {r["name"] for r in await reader.fetch("SELECT name FROM domains")}
        assert names == {f"d{i}.test" for i in range(40) if i != 13}  # 13 rolled back alone
        assert writer.requests == 40 and writer.commits < 40  # batched
    finally:
        await reader.close()
        await writer.stop()


async def test_refuses_a_database_without_synchronous_commit(cluster: str) -> None:
    async with new_database(cluster) as dsn:
        admin = await asyncpg.connect(dsn)
        name = dsn.rsplit("/", 1)[1]
        await admin.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        await admin.close()
        with pytest.raises(NotDurable, match="synchronous_commit"):
            await PgWriter(dsn).start()
