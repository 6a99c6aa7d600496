"""Login-storm load generator (part 7), run as its own process::

    python bench/loginstorm.py --port P --workers u:pw,... [--stormers u:pw,...] --seconds S

Each *worker* holds one connection: LOGIN, SELECT INBOX, then for
``--seconds`` a loop of APPEND (a 4 KB message), STORE +FLAGS (\\Deleted) of
it and EXPUNGE, each timed alone.  Each *stormer*, meanwhile, connects,
sends LOGIN and LOGOUT, closes, and starts over (a client that reconnects
every time; the same password each time, so a credential cache may answer).
``--warmup N``: each stormer first logs in N times, untimed.  ``--rate R``:
the stormers together start at most R logins per second (else back to back).
Prints one JSON object: per worker command count, p50 and p99 in ms; the
stormers' logins per second (over the phase, and over its second half, when
every account has logged in before) and LOGIN p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile  # noqa: E402
from bench.imapc import Client, exists_count  # noqa: E402

MESSAGE = (b"From: bench@example.test\r\nTo: bench@example.test\r\n"
           b"Subject: login storm\r\n\r\n" + b"x" * 76 + b"\r\n") * 50  # ~4 KB


async def worker(host: str, port: int, user: str, password: str, until: float,
                 lat: dict[str, list[float]]) -> None:
    c = await Client.connect(host, port)
    try:
        await c.login(user, password)
        exists = exists_count(await c.command(b"SELECT INBOX")) or 0
        while True:  # at least one round, however short --seconds
            t0 = time.perf_counter()
            await c.command(b"APPEND INBOX", MESSAGE)
            t1 = time.perf_counter()
            exists += 1
            await c.command(b"STORE %d +FLAGS (\\Deleted)" % exists)
            t2 = time.perf_counter()
            await c.command(b"EXPUNGE")
            t3 = time.perf_counter()
            exists -= 1
            lat.setdefault("APPEND", []).append(t1 - t0)
            lat.setdefault("STORE", []).append(t2 - t1)
            lat.setdefault("EXPUNGE", []).append(t3 - t2)
            if t3 >= until:
                break
    finally:
        await c.close()


async def stormer(host: str, port: int, user: str, password: str, until: float,
                  logins: list[float], done: list[float], period: float) -> None:
    """Log in and out until ``until``; ``period`` > 0: start one login per
    ``period`` seconds at most (an open loop), else back to back."""
    start = time.perf_counter()
    while True:  # at least one login
        if period:
            start += period
        c = await Client.connect(host, port)
        try:
            t0 = time.perf_counter()
            await c.login(user, password)
            logins.append(time.perf_counter() - t0)
            done.append(time.perf_counter())
        finally:
            await c.close()
        if time.perf_counter() >= until:
            break
        if period and start > time.perf_counter():
            await asyncio.sleep(start - time.perf_counter())


def _pairs(text: str) -> list[tuple[str, str]]:
    return [(u, p) for u, p in (x.split(":", 1) for x in text.split(",") if x)]


async def warm_up(host: str, port: int, user: str, password: str, times: int) -> None:
    """Log in ``times`` times in a row, untimed (fills per-process caches: the
    connections land on the workers at random)."""
    for _ in range(times):
        c = await Client.connect(host, port)
        try:
            await c.login(user, password)
        finally:
            await c.close()


async def main(args: argparse.Namespace) -> dict:
    stormers = _pairs(args.stormers)
    if args.warmup:
        await asyncio.gather(*(warm_up(args.host, args.port, u, p, args.warmup)
                               for u, p in stormers))
    period = len(stormers) / args.rate if args.rate else 0.0
    lat: dict[str, list[float]] = {}
    logins: list[float] = []
    done: list[float] = []
    t0 = time.perf_counter()
    until = t0 + args.seconds
    await asyncio.gather(
        *(worker(args.host, args.port, u, p, until, lat) for u, p in _pairs(args.workers)),
        *(stormer(args.host, args.port, u, p, until, logins, done, period) for u, p in stormers))
    wall = time.perf_counter() - t0
    out: dict = {
        "seconds": wall,
        "commands": {op: {"count": len(v), "p50_ms": percentile(v, 50) * 1000,
                          "p99_ms": percentile(v, 99) * 1000} for op, v in sorted(lat.items())},
        "logins": len(logins), "logins_per_s": len(logins) / wall,
        # The second half alone: once every account has logged in before
        # (a credential cache is warm), what a steady storm gets.
        "logins_per_s_second_half": sum(t >= t0 + wall / 2 for t in done) / (wall / 2),
    }
    if logins:
        out["login_p50_ms"] = percentile(logins, 50) * 1000
        out["login_p99_ms"] = percentile(logins, 99) * 1000
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="IMAP login-storm load generator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", required=True, help="user:password,... (working clients)")
    ap.add_argument("--stormers", default="", help="user:password,... (login/logout loop)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=0.0,
                    help="logins/s of all stormers together at most (0: back to back)")
    ap.add_argument("--warmup", type=int, default=0,
                    help="untimed logins of each stormer before the clock starts")
    print(json.dumps(asyncio.run(main(ap.parse_args()))))
