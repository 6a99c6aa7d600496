"""Hold N authenticated IMAP connections in IDLE (part 5), as a separate process::

    python bench/idlemem.py --port P --users u:pw,... --count 10000

Connections log in (round-robin over ``--users``), SELECT INBOX and send IDLE
(RFC 2177), ``--parallel`` at a time.  Prints ``{"ready": n, "failed": m,
"seconds": s}`` on stdout when all are idling, then holds them until stdin
closes, then sends DONE/LOGOUT-free close (the server sees EOF).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.imapc import Client  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    users = [u.split(":", 1) for u in args.users.split(",")]
    clients: list[Client] = []
    failed = 0
    gate = asyncio.Semaphore(args.parallel)

    async def one(i: int) -> None:
        nonlocal failed
        user, password = users[i % len(users)]
        async with gate:
            try:
                c = await Client.connect(args.host, args.port)
                await c.login(user, password)
                await c.command(b"SELECT INBOX")
                await c.idle_start()
                clients.append(c)
            except (OSError, TimeoutError, Exception):  # noqa: BLE001 - counted, reported
                failed += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.count)))
    print(json.dumps({"ready": len(clients), "failed": failed,
                      "seconds": time.perf_counter() - t0}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for c in clients:
        c.writer.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="idle IMAP connections")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--users", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=200)
    a = ap.parse_args()
    want = a.count + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    asyncio.run(main(a))
