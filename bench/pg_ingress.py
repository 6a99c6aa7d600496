"""Durable SMTP ingress with the daemon on PostgreSQL, one and two nodes, beside
the daemon on LMDB and Postfix, in one run (issue #17 §4).

A throwaway PostgreSQL 15 cluster (``tests/support/postgres.py``) holds the
store; each node is ``mailserver run`` with ``[store] backend = "postgresql"``
(its own data directory, ``workers = 1``, an SMTP listener of its own).  With
two nodes, the sessions are split between them (as a TCP load balancer
would), one ``smtp-source`` per node.  A message counts once it is in alice's
INBOX (the mailbox row's count in the database; IMAP STATUS on LMDB; the
Maildir for Postfix), so every figure is of durable delivery.  CPU is the
daemons' (and, on PostgreSQL, the cluster's: its share of the work is part of
the cost), per message.  The LMDB daemon runs ``workers = 0`` (one worker per
core, as shipped); a PostgreSQL node runs one process.

    ./scripts/bench-env python bench/pg_ingress.py --nodes 1,2 --rounds 2
    python bench/pg_ingress.py --count 2000 --sessions 20 --no-reference

Needs root for Postfix (``--no-reference`` skips it) and Debian's
postgresql-15 (``./scripts/test`` installs it).  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import asyncpg  # noqa: E402
from support.postgres import new_database, throwaway_postgres  # noqa: E402

from bench import parts  # noqa: E402
from bench.common import cpu_seconds, median  # noqa: E402
from bench.servers import (  # noqa: E402
    CHEAP_AUTH,
    DOMAIN,
    VMAIL_UID,
    Ours,
    Postfix,
    free_port,
)
from mailserver.store.pg.directory import PgDirectory  # noqa: E402
from mailserver.store.pg.writer import PgWriter  # noqa: E402

ALICE, PASSWORD = "alice@example.test", "alice-secret"


class PgNodeDaemon(Ours):
    """Our daemon as one node on the PostgreSQL store at ``dsn``."""

    def __init__(self, workdir: Path, dsn: str) -> None:
        super().__init__(workdir)
        self.dsn = dsn
        self.analytics = False

    def _config(self) -> Path:
        path = self.dir / "mailserver.toml"
        path.write_text(f"""hostname = "{self.dir.name}.bench.localhost"
data_dir = "{self.data_dir}"
domains = ["{DOMAIN}"]
[store]
backend = "postgresql"
dsn = "{self.dsn}"
[listeners.smtp]
protocol = "smtp"
port = 0
[limits]
max_connections = 30000
max_connections_per_ip = 30000
[log]
format = "json"
level = "info"
[analytics]
enabled = false
[junk]
enabled = false
[auth]
{CHEAP_AUTH}
""")
        return path


async def _users(dsn: str) -> None:
    from argon2 import PasswordHasher

    writer = PgWriter(dsn)
    await writer.start()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        directory = PgDirectory(writer, pool)
        await directory.add_domain(DOMAIN)
        await directory.add_account(ALICE, PasswordHasher(time_cost=1, memory_cost=64,
                                                          parallelism=1).hash(PASSWORD))
    finally:
        await pool.close()
        await writer.stop()


async def _cluster_pid(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        data = await conn.fetchval("SHOW data_directory")
    finally:
        await conn.close()
    return int((Path(data) / "postmaster.pid").read_text().split()[0])


async def _split_source(ports: list[int], sessions: int, size: int, count: int) -> None:
    """smtp-source split across ``ports`` (sessions and messages as evenly as can be)."""
    procs = []
    for k, port in enumerate(ports):
        n = count // len(ports) + (k < count % len(ports))
        s = max(1, sessions // len(ports) + (k < sessions % len(ports)))
        procs.append(await asyncio.create_subprocess_exec(
            "smtp-source", "-l", str(size), "-m", str(n), "-s", str(s),
            "-f", "bench@example.net", "-t", ALICE, f"127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE))
    for p in procs:
        _, err = await p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"smtp-source failed: {err.decode()[-300:]}")


async def _pg_round(dsn: str, nodes: list[PgNodeDaemon], cluster_pid: int,
                    sessions: int, size: int, count: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)

    async def delivered() -> int:
        return int(await conn.fetchval(
            "SELECT messages FROM mailboxes WHERE account = $1 AND name = 'INBOX'", ALICE))

    try:
        base = await delivered()
        roots = [p for n in nodes for p in n.pids]
        cpu0, db0 = cpu_seconds(roots), cpu_seconds([cluster_pid])
        t0 = time.perf_counter()
        await _split_source([n.port("smtp") for n in nodes], sessions, size, count)
        while await delivered() < base + count:
            await asyncio.sleep(0.02)
        wall = time.perf_counter() - t0
        return {"rate": count / wall,
                "cpu_ms_per_msg": (cpu_seconds(roots) - cpu0) / count * 1000,
                "db_cpu_ms_per_msg": (cpu_seconds([cluster_pid]) - db0) / count * 1000}
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    if not shutil.which("smtp-source"):
        raise SystemExit("needs smtp-source (Debian's postfix package)")
    work = Path(tempfile.mkdtemp(prefix="pg-ingress-"))
    os.chmod(work, 0o755)  # postfix and uid 65534 must reach their directories
    rows: dict[str, list[dict[str, float]]] = {}
    stop: list = []
    try:
        with throwaway_postgres() as cluster:
            async with new_database(cluster) as dsn:
                await _users(dsn)
                cluster_pid = await _cluster_pid(dsn)
                lmdb = Ours(work / "lmdb")
                lmdb.workers = 0  # as the production template and ./scripts/bench run it
                await lmdb.add_users([(ALICE, PASSWORD)])
                lmdb.start()
                stop.append(lmdb.stop)
                counter = parts.ImapCounter(lmdb.port("imap"))
                t_lmdb = parts.Target("lmdb", lmdb.port("smtp"), None, lambda: lmdb.pids,
                                      counter)
                t_pf = None
                if args.reference:
                    vmail = work / "vmail"
                    (vmail / DOMAIN).mkdir(parents=True)
                    os.chown(vmail, VMAIL_UID, VMAIL_UID)
                    os.chown(vmail / DOMAIN, VMAIL_UID, VMAIL_UID)
                    pf = Postfix(work / "postfix", vmail, free_port())
                    pf.configure([ALICE])
                    pf.start()
                    stop.append(pf.stop)

                    async def maildir() -> int:
                        return pf.delivered(ALICE)

                    t_pf = parts.Target("postfix", pf.smtp_port, None, lambda: pf.pids,
                                        maildir)
                nodes = [PgNodeDaemon(work / f"node{k}", dsn) for k in range(max(args.nodes))]
                for r in range(args.rounds):
                    for t in (t_lmdb, t_pf):
                        if t is not None:
                            res = await parts.ingress_once(t, args.sessions, args.size,
                                                           args.count)
                            rows.setdefault(t.name, []).append(res)
                    for n in args.nodes:
                        for node in nodes[:n]:
                            if node.proc is None:
                                node.start()
                                stop.append(node.stop)
                        res = await _pg_round(dsn, nodes[:n], cluster_pid, args.sessions,
                                              args.size, args.count)
                        rows.setdefault(f"postgresql, {n} node(s)", []).append(res)
                    print(f"round {r + 1} done", file=sys.stderr)
                await counter.close()
                for fn in reversed(stop):
                    fn()
                stop.clear()
    finally:
        for fn in reversed(stop):
            fn()
        shutil.rmtree(work, ignore_errors=True)
    ref = median([x["rate"] for x in rows["postfix"]]) if "postfix" in rows else None
    print(f"\n{args.sessions} sessions, {args.size} B, {args.count} messages per round, "
          f"medians of {args.rounds} rounds\n")
    print("| ours / reference | msg/s | vs Postfix | daemon CPU ms/msg | DB CPU ms/msg |")
    print("|---|---:|---:|---:|---:|")
    for name, res in rows.items():
        rate = median([x["rate"] for x in res])
        cpu = median([x["cpu_ms_per_msg"] for x in res])
        db = median([x.get("db_cpu_ms_per_msg", 0.0) for x in res])
        ratio = f"{rate / ref:.2f}x" if ref else "-"
        print(f"| {name} | {rate:,.0f} | {ratio} | {cpu:.2f} | {db:.2f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="1,2", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-reference", dest="reference", action="store_false")
    asyncio.run(main(ap.parse_args()))
