"""``mailserver db migrate [--dry-run]`` and ``mailserver db status``: the
PostgreSQL store's schema (``store/pg/migrations.py``, issue #17)."""

from __future__ import annotations

import argparse
import asyncio

from mailserver.cli.common import CliError, load_config
from mailserver.store.pg import migrations


def cmd_db(args: argparse.Namespace) -> int:
    """``db migrate``: apply the pending migrations (``--dry-run``: print them,
    SQL included, and change nothing); ``db status``: the schema version and
    what is pending.  The database is ``--dsn`` or ``[store] dsn``.  Exit 0;
    1 through ``main``'s error line (no DSN, a connection or schema error)."""
    config = load_config(args)
    dsn = args.dsn or config.store.dsn
    if not dsn:
        raise CliError("no database: give --dsn or set [store] dsn (postgresql://...)")
    return asyncio.run(_run(args, dsn))


async def _run(args: argparse.Namespace, dsn: str) -> int:
    import asyncpg  # only this command needs it at import time

    try:
        conn = await asyncpg.connect(dsn, timeout=30)
    except (OSError, asyncpg.PostgresError) as exc:
        raise CliError(f"cannot connect to the database: {exc}") from None
    try:
        if args.action == "status":
            state = await migrations.status(conn)
            todo = migrations.pending(state)
            print(f"schema version {state.version} (this release: {migrations.LATEST}, "
                  f"needs {migrations.REQUIRED}); pending: "
                  + (", ".join(f"{m.version} {m.name}" for m in todo) or "none"))
            return 0
        try:
            done = await migrations.migrate(conn, dry_run=args.dry_run)
        except migrations.SchemaError as exc:
            raise CliError(str(exc)) from None
        for m in done:
            print(f"-- {m.version} {m.name} ({m.phase})" +
                  ("" if not args.dry_run else f"\n{m.sql.strip()}\n"))
        verb = "would apply" if args.dry_run else "applied"
        print(f"{verb} {len(done)} migration(s); schema version "
              f"{(done[-1].version if done else (await migrations.status(conn)).version)}")
        return 0
    finally:
        await conn.close()


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add the ``db`` command and its ``migrate``/``status`` actions to ``sub``."""
    cmd = sub.add_parser("db", help="the PostgreSQL store's schema")
    dsub = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("migrate", "apply the pending schema migrations"),
                         ("status", "the schema version and what is pending")):
        p = dsub.add_parser(action, parents=[common], help=text)
        p.add_argument("--dsn", help="postgresql://user@host:port/db (default: [store] dsn)")
        if action == "migrate":
            p.add_argument("--dry-run", action="store_true",
                           help="print what would run, change nothing")
    cmd.set_defaults(func=cmd_db)
