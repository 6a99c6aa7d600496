"""Memory of one selected-mailbox view (``SelectedMailbox``) with N messages::

    python bench/viewmem.py [--sizes 0,1000,100000]

The view is built as SELECT builds it, from ``(uids, flags)`` parallel lists
shaped like ``Store.list_flags``' answer, flag sets decoded (hence interned)
by the store codec with a realistic mix (mostly ``\\Seen``).  Those lists are
freed afterwards, as after SELECT, so the figure is what a selected session
keeps (tracemalloc, bytes).  Also prints the time to build the view and to map
every UID to its sequence number and flags.  Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailserver.imap.selected import SelectedMailbox  # noqa: E402
from mailserver.store.codec import SEEN_BIT, decode_flags  # noqa: E402
from mailserver.store.model import MailboxInfo  # noqa: E402
from mailserver.store.store import Store  # noqa: E402

#: (system bits, keywords) of a typical INBOX: read, unread, answered, a keyword.
_MIX = ((SEEN_BIT, b""), (SEEN_BIT, b""), (SEEN_BIT, b""), (SEEN_BIT, b""),
        (SEEN_BIT, b""), (SEEN_BIT, b""), (0, b""), (SEEN_BIT | 2, b""),
        (SEEN_BIT, b"$Forwarded"), (0, b"$Junk"))


def _inputs(n: int) -> tuple[list[int], list[frozenset[str]]]:
    # Gaps in the UIDs, as expunges leave them, so no small-int cache helps.
    uids = [1000 + 3 * i for i in range(n)]
    flags = [decode_flags(*_MIX[i % len(_MIX)]) for i in range(n)]
    return uids, flags


def _info(n: int) -> MailboxInfo:
    return MailboxInfo(id=1, account="bench@example.org", name="INBOX", uidvalidity=1,
                       uidnext=1000 + 3 * n, highestmodseq=1, messages=n, size=0,
                       subscribed=True, special_use=None)


def measure(store: Store, n: int) -> dict[str, float]:
    for bits, kw in _MIX:  # the codec's intern cache is process state, not the view's
        decode_flags(bits, kw)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    uids, flags = _inputs(n)
    t0 = time.perf_counter()
    view = SelectedMailbox(store, _info(n), (uids, flags), readonly=False)
    build = time.perf_counter() - t0
    del uids, flags
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    t0 = time.perf_counter()
    for uid in range(1000, 1000 + 3 * n, 3):
        view.seq_of(uid)
    lookup = time.perf_counter() - t0
    t0 = time.perf_counter()
    view.first_unseen()
    view.keywords()
    scan = time.perf_counter() - t0
    return {"messages": n, "view_bytes": size, "bytes_per_message": round(size / max(n, 1), 1),
            "build_ms": round(build * 1e3, 2), "seq_of_all_ms": round(lookup * 1e3, 2),
            "scan_ms": round(scan * 1e3, 2)}


async def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp), map_size=1 << 24)
        try:
            for n in sizes:
                print(json.dumps(measure(store, n)), flush=True)
        finally:
            await store.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="0,1000,100000")
    a = p.parse_args()
    asyncio.run(main([int(s) for s in a.sizes.split(",")]))
