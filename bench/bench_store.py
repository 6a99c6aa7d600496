"""Store throughput benchmark (not a test): prints messages/s for 1, 10 and 100
concurrently delivering tasks, the group-commit ratio, and the cost of
``list_messages`` (SELECT) and ``changes_since`` on a 100,000-message mailbox.

Run: ``.venv/bin/python bench/bench_store.py [--quick]``.  Uses a temporary
directory on the same file system as ``$TMPDIR`` (fsync costs are real).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailserver.store.model import NewMessage  # noqa: E402
from mailserver.store.store import Store  # noqa: E402

A = "bench@example.org"


def _message(n: int) -> bytes:
    return (
        f"From: sender{n}@example.net\r\nTo: {A}\r\nSubject: message {n}\r\n"
        f"Message-ID: <{n}@bench>\r\n\r\n".encode()
        + b"Lorem ipsum dolor sit amet. " * 40
        + b"\r\n"
    )


async def deliveries(store: Store, tasks: int, total: int) -> None:
    per_task = total // tasks
    counter = iter(range(10**9))

    async def worker() -> None:
        for _ in range(per_task):
            n = next(counter)
            await store.deliver(
                [NewMessage(A, "INBOX", prefix=b"Delivered-To: " + A.encode() + b"\r\n")],
                _message(n),
                b"facts",
                internal_date=int(time.time()),
            )

    commits = store.commits
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    dt = time.perf_counter() - t0
    done = per_task * tasks
    made = store.commits - commits
    print(
        f"{tasks:>4} tasks: {done:>6} messages in {dt:6.2f} s = {done / dt:>8.0f} msg/s, "
        f"{made} commits ({done / max(made, 1):.1f} messages per fsync)"
    )


async def select_cost(store: Store, count: int) -> None:
    mb = await store.create_mailbox(A, "Big")
    blob = _message(-1)
    batch = [NewMessage(A, "Big")] * 500
    t0 = time.perf_counter()
    pending = []
    for _ in range(count // len(batch)):
        pending.append(store.deliver(batch, blob, b"", internal_date=1))
        if len(pending) >= 20:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    print(f"filled {count} messages in {time.perf_counter() - t0:.2f} s")
    hms = store.get_mailbox(A, "Big").highestmodseq
    await store.store_flags(mb.id, range(1, count + 1, 1000), "add", frozenset({"\\Seen"}))
    for label, fn in (
        ("list_messages", lambda: store.list_messages(mb.id)),
        ("changes_since (100 changes)", lambda: store.changes_since(mb.id, hms)),
        ("get_mailbox", lambda: store.get_mailbox(A, "Big")),
    ):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        size = len(out) if isinstance(out, list) else len(getattr(out, "updated", ()))
        print(f"{label:>28}: {best * 1000:8.2f} ms ({size} records)")


async def main(quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as d:
        store = await Store.open(Path(d))
        try:
            await store.add_domain("example.org")
            await store.add_account(A, "x")
            for tasks, total in ((1, 300), (10, 2000), (100, 10000)):
                await deliveries(store, tasks, total // 5 if quick else total)
            await select_cost(store, 20_000 if quick else 100_000)
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    asyncio.run(main(parser.parse_args().quick))
