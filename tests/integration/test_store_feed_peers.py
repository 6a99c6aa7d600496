"""The change feed's cached peer list (``store/feed.py``): a process that binds
its socket after the list was cached still hears commits, and a dead peer's
socket is dropped."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from mailserver.store.feed import ChangeFeed

_OLD_MTIME_NS = 1_000_000_000_000_000_000  # 2001: long settled


def _age(run_dir: Path) -> None:
    """Make the directory's mtime old, so the next listing is kept (cached)."""
    os.utime(run_dir, ns=(_OLD_MTIME_NS, _OLD_MTIME_NS))


async def test_new_peer_after_cached_listing_hears_commits(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    run_dir = tmp_path / "run"
    sender = ChangeFeed(run_dir, loop)
    first = ChangeFeed(run_dir, loop)
    late: ChangeFeed | None = None
    try:
        _age(run_dir)
        waiter = first.register(7)
        await asyncio.to_thread(sender.broadcast, frozenset({7}))  # lists and caches
        await asyncio.wait_for(waiter, 10)
        assert sender._peers_mtime == _OLD_MTIME_NS  # the listing was kept

        late = ChangeFeed(run_dir, loop)  # binding changes the directory's mtime
        w_late, w_first = late.register(9), first.register(9)
        await asyncio.to_thread(sender.broadcast, frozenset({9}))
        await asyncio.wait_for(asyncio.gather(w_late, w_first), 10)
    finally:
        for feed in (sender, first, late):
            if feed is not None:
                feed.close()


async def test_dead_peer_socket_is_removed(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    run_dir = tmp_path / "run"
    sender = ChangeFeed(run_dir, loop)
    live = ChangeFeed(run_dir, loop)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(run_dir / "1-dead.sock"))
    dead.close()  # bound, then gone without unlinking: ECONNREFUSED
    try:
        _age(run_dir)
        waiter = live.register(3)
        await asyncio.to_thread(sender.broadcast, frozenset({3}))
        await asyncio.wait_for(waiter, 10)
        assert not (run_dir / "1-dead.sock").exists()
        waiter = live.register(4)
        await asyncio.to_thread(sender.broadcast, frozenset({4}))  # listed again
        await asyncio.wait_for(waiter, 10)
    finally:
        sender.close()
        live.close()
