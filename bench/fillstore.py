"""Fill one mailbox of our store fast, straight through ``Store.deliver`` (part 6)::

    python bench/fillstore.py DATA_DIR ACCOUNT MAILBOX COUNT [--chunk 10000]

Run with the daemon stopped (or not: LMDB serialises writers across
processes).  Messages are the corpus messages in turn, each behind a unique
fixed-width ``X-Bench-Seq`` header so every blob is distinct (the store
deduplicates identical blobs; we want it to grow) while the MIME facts of each
corpus message, shifted by a constant header length, are computed only once.
Deliveries run 64 at a time so group commit can batch them, as under SMTP
load.  Prints one JSON line per chunk: messages so far, msg/s in that chunk,
and the size of the LMDB data file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import corpus_messages  # noqa: E402
from mailserver.delivery.local import message_facts  # noqa: E402
from mailserver.store.model import NewMessage  # noqa: E402
from mailserver.store.store import Store  # noqa: E402


def seq_header(n: int) -> bytes:
    """The unique header put in front of message ``n`` (CRLF-terminated)."""
    return b"X-Bench-Seq: %012d\r\n" % n


def _store_bytes(data_dir: Path) -> int:
    return sum(f.stat().st_size for f in (data_dir / "store").glob("*.mdb"))


async def fill(data_dir: Path, account: str, mailbox: str, count: int, chunk: int) -> None:
    corpus = [m for m in corpus_messages() if len(m) < 1_000_000]
    facts = [message_facts(seq_header(0) + m) for m in corpus]
    store = await Store.open(data_dir)
    try:
        if mailbox not in {m.name for m in store.list_mailboxes(account)}:
            await store.create_mailbox(account, mailbox)
        target = [NewMessage(account, mailbox)]
        done = 0
        sem = asyncio.Semaphore(64)
        while done < count:
            n = min(chunk, count - done)
            t0 = time.perf_counter()

            async def one(i: int) -> None:
                k = i % len(corpus)
                async with sem:
                    await store.deliver(target, seq_header(i) + corpus[k], facts[k],
                                        internal_date=int(time.time()))

            await asyncio.gather(*(one(done + i) for i in range(n)))
            dt = time.perf_counter() - t0
            done += n
            print(json.dumps({"messages": done, "rate": n / dt,
                              "store_bytes": _store_bytes(data_dir)}), flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="fill a mailbox of our store")
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("account")
    ap.add_argument("mailbox")
    ap.add_argument("count", type=int)
    ap.add_argument("--chunk", type=int, default=10000)
    a = ap.parse_args()
    asyncio.run(fill(a.data_dir, a.account, a.mailbox, a.count, a.chunk))
