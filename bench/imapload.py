"""IMAP load generator (part 3), run as its own process so it does not share a core's
event loop with the harness::

    python bench/imapload.py --port P --users u1:pw1,u2:pw2 --seconds 20

Each user gets one connection that SELECTs its INBOX (filled beforehand from
the corpus) and then, for ``--seconds``, picks operations from a weighted mix:
SELECT, FETCH FLAGS / ENVELOPE / BODYSTRUCTURE over a range of 50, FETCH
BODY.PEEK[] of one message, SEARCH, STORE +FLAGS, APPEND (a corpus message),
EXPUNGE (of one message flagged \\Deleted just before, so the mailbox keeps
its size) and an IDLE round trip (IDLE, ``+``, DONE, OK: RFC 2177).  Prints
one JSON object: per command the count, p50 and p99 in milliseconds, and the
total operations per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import corpus_messages, percentile  # noqa: E402
from bench.imapc import Client, exists_count  # noqa: E402

MIX = {  # operation -> weight
    "SELECT": 2, "FETCH_FLAGS": 10, "FETCH_ENVELOPE": 10, "FETCH_BODYSTRUCTURE": 6,
    "FETCH_BODY": 20, "SEARCH": 6, "STORE": 10, "APPEND": 4, "EXPUNGE": 2, "IDLE": 4,
}


async def session(host: str, port: int, user: str, password: str, seconds: float,
                  corpus: list[bytes], lat: dict[str, list[float]], seed: int) -> None:
    rnd = random.Random(seed)
    ops, weights = list(MIX), list(MIX.values())
    c = await Client.connect(host, port)
    try:
        await c.login(user, password)
        exists = exists_count(await c.command(b"SELECT INBOX")) or 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            op = rnd.choices(ops, weights)[0]
            lo = rnd.randint(1, max(1, exists - 49))
            rng = f"{lo}:{min(exists, lo + 49)}".encode() if exists else b"1"
            t0 = time.perf_counter()
            if op == "SELECT":
                exists = exists_count(await c.command(b"SELECT INBOX")) or exists
            elif op == "FETCH_FLAGS":
                await c.command(b"FETCH " + rng + b" (FLAGS)")
            elif op == "FETCH_ENVELOPE":
                await c.command(b"FETCH " + rng + b" (ENVELOPE)")
            elif op == "FETCH_BODYSTRUCTURE":
                await c.command(b"FETCH " + rng + b" (BODYSTRUCTURE)")
            elif op == "FETCH_BODY":
                await c.command(b"FETCH %d (BODY.PEEK[])" % rnd.randint(1, max(1, exists)))
            elif op == "SEARCH":
                query = rnd.choice([b"UNSEEN", b"FLAGGED", b'SUBJECT "test"', b'FROM "example"'])
                await c.command(b"SEARCH " + query)
            elif op == "STORE":
                flag = rnd.choice([b"\\Seen", b"\\Flagged", b"$Bench"])
                sign = rnd.choice([b"+", b"-"])
                await c.command(b"STORE " + rng + b" " + sign + b"FLAGS (" + flag + b")")
            elif op == "APPEND":
                await c.command(b"APPEND INBOX (\\Seen)", rnd.choice(corpus))
                exists += 1
            elif op == "EXPUNGE":
                # Delete the newest message (most often one we appended).
                await c.command(b"STORE %d +FLAGS.SILENT (\\Deleted)" % exists)
                t0 = time.perf_counter()  # time the EXPUNGE alone
                await c.command(b"EXPUNGE")
                exists -= 1
            elif op == "IDLE":
                await c.idle_start()
                await c.idle_done()
            lat.setdefault(op, []).append(time.perf_counter() - t0)
    finally:
        await c.close()


async def main(args: argparse.Namespace) -> dict:
    corpus = [m for m in corpus_messages() if len(m) < 200_000]
    users = [u.split(":", 1) for u in args.users.split(",")]
    lat: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    await asyncio.gather(*(session(args.host, args.port, u, p, args.seconds, corpus, lat, i)
                           for i, (u, p) in enumerate(users)))
    wall = time.perf_counter() - t0
    total = sum(len(v) for v in lat.values())
    return {
        "seconds": wall, "ops": total, "ops_per_s": total / wall,
        "commands": {op: {"count": len(v), "per_s": len(v) / wall,
                          "p50_ms": percentile(v, 50) * 1000, "p99_ms": percentile(v, 99) * 1000}
                     for op, v in sorted(lat.items())},
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="IMAP load generator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--users", required=True, help="user:password,...")
    ap.add_argument("--seconds", type=float, default=20.0)
    print(json.dumps(asyncio.run(main(ap.parse_args()))))
