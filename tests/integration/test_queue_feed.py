"""The change feed carries queue activity across processes: a message queued
by another process (a worker, the CLI's ``queue retry``) wakes a scheduler
waiting on the same store."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mailserver.store.store import Store

_QUEUE_ONE = """
import asyncio, sys, time
from pathlib import Path
from mailserver.store.store import Store

async def main():
    store = await Store.open(Path(sys.argv[1]))
    try:
        await store.queue_add("Q1", b"record", b"message bytes\\r\\n", time.time())
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_queue_add_in_another_process_wakes_the_scheduler(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        waiting = asyncio.create_task(store.wait_for_queue_change())
        await asyncio.sleep(0)  # registered before the other process commits
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _QUEUE_ONE, str(tmp_path)
        )
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        await asyncio.wait_for(waiting, 10)
        assert store.queue_get("Q1") is not None
    finally:
        await store.close()
