"""The PostgreSQL store's schema (issue #17 §2), on a throwaway cluster
(``support.postgres``): ``mailserver db migrate`` applies each migration once
(also with two nodes migrating at once), ``--dry-run`` changes nothing, a
node refuses a schema it cannot run on, and UID allocation under the mailbox
row's lock never repeats or goes back with concurrent writers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from support.daemon import run_cli
from support.postgres import new_database

from mailserver.store.pg import migrations
from mailserver.store.pg.migrations import LATEST, Migration, SchemaError, SchemaState


@pytest.fixture
async def db(cluster: str) -> AsyncIterator[str]:
    async with new_database(cluster, migrated=False) as dsn:
        yield dsn


def test_cli_dry_run_then_migrate(cluster: str, tmp_path: Path) -> None:
    conf = tmp_path / "mailserver.toml"
    conf.write_text('data_dir = "data"\n[store]\ndsn = "' + cluster + '"\n', encoding="utf-8")
    dry = run_cli("db", "migrate", "--dry-run", "-c", conf)
    assert dry.returncode == 0, dry.stderr
    assert "CREATE TABLE mailboxes" in dry.stdout and f"would apply {LATEST} migration(s)" in dry.stdout
    status = run_cli("db", "status", "-c", conf)
    assert status.stdout.startswith("schema version 0 ") and "pending: 1 initial schema" \
        in status.stdout
    done = run_cli("db", "migrate", "-c", conf)
    assert done.returncode == 0 and f"applied {LATEST} migration(s); schema version {LATEST}" in done.stdout
    again = run_cli("db", "migrate", "-c", conf)
    assert f"applied 0 migration(s); schema version {LATEST}" in again.stdout
    assert "pending: none" in run_cli("db", "status", "-c", conf).stdout
    bad = run_cli("db", "status", "--dsn", "postgresql://nobody@127.0.0.1:9/x", "-c", conf)
    assert bad.returncode == 1 and "cannot connect" in bad.stderr


async def test_two_nodes_migrating_at_once_apply_each_once(db: str) -> None:
    conns = [await asyncpg.connect(db) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrations.migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, LATEST]  # the lock made one wait
        state = await migrations.status(conns[0])
        assert state == SchemaState(tuple(range(1, LATEST + 1)), 1)
        migrations.check(state)
    finally:
        for c in conns:
            await c.close()


async def test_node_refuses_a_schema_it_cannot_run_on(db: str) -> None:
    conn = await asyncpg.connect(db)
    try:
        with pytest.raises(SchemaError, match="db migrate"):
            migrations.check(await migrations.status(conn))
        # A later release added a version and contracted away what this
        # release needs: this code (LATEST) must not start, nor migrate it.
        later = (*migrations.MIGRATIONS,
                 Migration(LATEST + 1, "drop something", "contract", "SELECT 1",
                           compatible_from=LATEST + 1))
        await migrations.migrate(conn, migrations=later)
        state = await migrations.status(conn)
        with pytest.raises(SchemaError, match="upgrade it"):
            migrations.check(state)
        with pytest.raises(SchemaError, match="does not know"):
            await migrations.migrate(conn)
    finally:
        await conn.close()


async def test_uid_allocation_never_repeats_under_concurrent_writers(db: str) -> None:
    setup = await asyncpg.connect(db)
    await migrations.migrate(setup)
    await setup.execute("INSERT INTO domains VALUES ('example.test')")
    await setup.execute("INSERT INTO accounts (address, domain, password_hash) "
                        "VALUES ('alice@example.test', 'example.test', 'x')")
    mbox = await setup.fetchval("INSERT INTO mailboxes (account, name, uidvalidity) "
                                "VALUES ('alice@example.test', 'INBOX', 1) RETURNING id")
    seen: list[tuple[int, int, int]] = []  # (first uid, n, modseq) in commit order

    async def writer(k: int) -> None:
        conn = await asyncpg.connect(db)
        try:
            for i in range(25):
                n = 1 + (k + i) % 3
                async with conn.transaction():
                    row = await conn.fetchrow("SELECT * FROM allocate_uids($1, $2)", mbox, n)
                    await asyncio.sleep(0)  # others queue on the row lock meanwhile
                    seen.append((row["first_uid"], n, row["modseq"]))
        finally:
            await conn.close()

    await asyncio.gather(*(writer(k) for k in range(4)))
    uids = [u for first, n, _ in seen for u in range(first, first + n)]
    assert len(uids) == len(set(uids)) and sorted(uids) == list(range(1, len(uids) + 1))
    # Appended in commit order: UIDs and MODSEQs only ever grow.
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)
    assert [s[2] for s in seen] == sorted(s[2] for s in seen)
    assert await setup.fetchval("SELECT uidnext FROM mailboxes WHERE id = $1", mbox) == \
        len(uids) + 1
    await setup.close()


async def test_rolling_upgrade_old_node_runs_on_the_expanded_schema(db: str) -> None:
    # Release N (schema 1) and release N+1 (schema 2, an expand migration)
    # on one database mid-upgrade: N+1 migrated, N keeps reading and writing.
    from mailserver.store.pg.directory import PgDirectory
    from mailserver.store.pg.writer import PgWriter

    expand = Migration(LATEST + 1, "accounts.display_name", "expand",
                       "ALTER TABLE accounts ADD COLUMN display_name text")
    newer = (*migrations.MIGRATIONS, expand)
    conn = await asyncpg.connect(db)
    pool = await asyncpg.create_pool(db, min_size=1, max_size=2)
    writer = PgWriter(db)
    try:
        await migrations.migrate(conn)
        old_node = PgDirectory(writer, pool)
        await writer.start()
        await old_node.add_domain("example.test")
        await old_node.add_account("before@example.test", "x")
        assert [m.version for m in await migrations.migrate(conn, migrations=newer)] == [
            LATEST + 1]
        state = await migrations.status(conn)
        migrations.check(state)  # the old node may keep running...
        migrations.check(state, latest=LATEST + 1, required=LATEST + 1)  # ...beside the new one
        await old_node.add_account("during@example.test", "x")  # old code, new schema
        assert [a.address for a in await old_node.list_accounts()] == [
            "before@example.test", "during@example.test"]
        await conn.execute("UPDATE accounts SET display_name = 'D' "  # the new node's column
                           "WHERE address = 'during@example.test'")
        assert (await old_node.get_account("during@example.test")) is not None
    finally:
        await writer.stop()
        await pool.close()
        await conn.close()
