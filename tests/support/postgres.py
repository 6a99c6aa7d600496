"""A throwaway PostgreSQL cluster on loopback (issue #17 §3): ``initdb`` into
a temporary directory, ``pg_ctl start`` on a free 127.0.0.1 port with its
unix socket in that directory, ``pg_ctl stop -m immediate`` and the
directory removed at the end.  Never the system's PostgreSQL service.

Debian's PostgreSQL 15 binaries (``/usr/lib/postgresql/15/bin``), which
``./scripts/test`` installs (with no cluster and no service started). The
server refuses to run as root, so as root (CI) it runs as the ``postgres``
user the package creates. ``require_postgres`` fails the test (no skip)
when that is missing.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

BIN = Path(os.environ.get("MAILSERVER_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "mailserver"


def require_postgres() -> None:
    """Fail (not skip) when a throwaway cluster cannot run here."""
    if not (BIN / "initdb").is_file():
        raise AssertionError(f"the PostgreSQL tests need {BIN}/initdb: ./scripts/test "
                             "installs Debian's postgresql as root")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise AssertionError("as root the PostgreSQL tests run the server as the "
                                 "postgres user, which Debian's package adds") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A started cluster; yields its DSN (``postgresql://mailserver@127.0.0.1:PORT/postgres``,
    trust authentication on loopback only)."""
    require_postgres()
    work = Path(tempfile.mkdtemp(prefix="pg-"))
    work.chmod(0o755)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(work, pw.pw_uid, pw.pw_gid)
    data, port = work / "data", _free_port()
    run = dict(check=True, capture_output=True, timeout=120)
    try:
        subprocess.run(_as_owner([str(BIN / "initdb"), "-D", str(data), "-U", USER,
                                  "--auth=trust", "-E", "UTF8", "--no-sync"]), **run)
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {work} "
                   "-c max_connections=50 -c shared_buffers=16MB")
        subprocess.run(_as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-o", options,
                                  "-l", str(work / "log"), "-w", "-t", "60", "start"]), **run)
        yield f"postgresql://{USER}@127.0.0.1:{port}/postgres"
    except subprocess.CalledProcessError as exc:
        log = (work / "log").read_text(errors="replace") if (work / "log").exists() else ""
        raise AssertionError(f"{exc.cmd}: {exc.stderr!r}\n{log}") from None
    finally:
        subprocess.run(_as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                  "-w", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(work, ignore_errors=True)


_names = itertools.count(1)


@asynccontextmanager
async def new_database(cluster: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A database of its own in ``cluster`` (``throwaway_postgres``'s DSN) for
    one test, at the current schema unless ``migrated`` is false; its DSN.
    Dropped at the end."""
    import asyncpg

    from mailserver.store.pg import migrations

    name = f"t{os.getpid()}_{next(_names)}"
    admin = await asyncpg.connect(cluster)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    dsn = cluster.rsplit("/", 1)[0] + "/" + name
    if migrated:
        conn = await asyncpg.connect(dsn)
        await migrations.migrate(conn)
        await conn.close()
    try:
        yield dsn
    finally:
        admin = await asyncpg.connect(cluster)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


@asynccontextmanager
async def writer_and_pool(dsn: str, *, connections: int = 1,
                          pool_size: int = 4) -> AsyncIterator[tuple[Any, Any]]:
    """What a node holds of ``dsn``: a started group-commit writer
    (``PgWriter``) and a read pool (asyncpg), stopped and closed after."""
    import asyncpg

    from mailserver.store.pg.writer import PgWriter

    writer = PgWriter(dsn, connections=connections)
    await writer.start()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size)
    try:
        yield writer, pool
    finally:
        await pool.close()
        await writer.stop()
