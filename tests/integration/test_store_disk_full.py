"""A full file system under the store (``store/headroom.py``), on a small
tmpfs mounted by the test (root only; skipped where mounting is impossible,
the map-size tests in ``test_store_headroom.py`` still run).

* New mail is refused (``StoreFull``) before the file system is full, while
  flag changes, EXPUNGE, MOVE and deletes still work in the reserve.
* When the disk fills between a round's measure and its commit, the commit
  fails on ENOSPC: that round is ``StoreFull`` too, nothing acknowledged is
  lost, and once space is freed the same store takes mail again, no restart.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from mailserver.store.feed import ChangeFeed
from mailserver.store.headroom import Headroom, Space, StoreFull
from mailserver.store.kv import open_env
from mailserver.store.store import Store
from mailserver.store.writer import Writer

A = "alice@example.org"
FS_SIZE = 4 << 20
MAP_SIZE = 1 << 30  # far more than the file system: the disk is the limit
NEARLY_FULL = "Mail store is nearly full: no new mail accepted until space is freed"
NO_DISK = "Not enough disk space: no new mail accepted until space is freed"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0700", "tmpfs",
                           str(mnt)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _message(i: int, size: int = 3000) -> bytes:
    head = b"From: a@example.org\r\nSubject: m %d\r\n\r\n" % i
    return head + (b"%d " % i * size)[: size - len(head)]


async def _open(data_dir: Path, limit: float = 0.95) -> Store:
    store = await Store.open(data_dir, map_size=MAP_SIZE, new_mail_limit=limit)
    if not store.get_account(A):
        await store.add_domain("example.org")
        await store.add_account(A, "h")
    return store


async def _fill(store: Store, first: int) -> tuple[list[int], set[str]]:
    """APPEND 50 at a time (one group commit) until refused: the UIDs
    acknowledged and the texts of the refusals."""
    acked: list[int] = []
    for r in range(200):
        got = await asyncio.gather(*(store.append(A, "INBOX", _message(first + r * 50 + i), b"",
                                                  internal_date=1) for i in range(50)),
                                   return_exceptions=True)
        refusals = {str(x) for x in got if isinstance(x, StoreFull)}
        assert all(isinstance(x, StoreFull) for x in got if isinstance(x, BaseException)), got
        acked += [x[0].uid for x in got if not isinstance(x, BaseException)]
        if refusals:
            return acked, refusals
    raise AssertionError("a 4 MiB file system took far too much mail")


def _uids(store: Store) -> list[int]:
    inbox = store.get_mailbox(A, "INBOX")
    return [r.uid for r in store.list_messages(inbox.id)]


async def test_full_disk_refuses_new_mail_but_keeps_deleting(small_fs: Path) -> None:
    store = await _open(small_fs / "data")
    try:
        with capture_logs() as logs:
            acked, refusals = await _fill(store, 0)
            space = store.space()  # measures (and observes) the fill after the last round
        warned = [e["level"] for e in logs if e["event"] == "store_fill_high"]
        assert warned == [0.8, 0.9]  # once per crossing
        assert refusals == {NEARLY_FULL}  # the headroom refused, not a failed commit
        assert space.capacity < FS_SIZE < MAP_SIZE and space.ratio > 0.9
        assert _uids(store) == acked
        inbox = store.get_mailbox(A, "INBOX")
        updated, _, _ = await store.store_flags(inbox.id, acked[:200], "add",
                                                frozenset({"\\Seen", "\\Deleted"}))
        assert len(updated) == 200
        _, moved = await store.move(inbox.id, acked[200:210], A, "Trash")
        assert len(moved) == 10
        assert await store.expunge(inbox.id) == acked[:200]
        # Room again, no restart.  Pages the EXPUNGE freed are reusable only
        # from the commit after the next (LMDB keeps the last snapshot whole):
        # a first round may still fail on the disk; the writer's tick frees them.
        more: list[int] = []
        for _ in range(3):
            got, refusals = await _fill(store, 100_000 + len(more) * 50)
            assert refusals <= {NEARLY_FULL, NO_DISK}
            more += got
            if NEARLY_FULL in refusals:
                break
        assert len(more) > 50  # of the 200 expunged (the estimate is on the safe side)
        assert _uids(store) == acked[210:] + more
        await store.delete_mailbox(A, "Trash")
        await store.delete_account(A)  # emptied on a full disk
    finally:
        await store.close()


async def _round(store: Store, first: int, count: int) -> tuple[list[int], set[str]]:
    """``count`` APPENDs in one group commit: UIDs acknowledged, refusal texts."""
    got = await asyncio.gather(*(store.append(A, "INBOX", _message(first + i), b"",
                                              internal_date=1) for i in range(count)),
                               return_exceptions=True)
    assert all(isinstance(x, StoreFull) for x in got if isinstance(x, BaseException)), got
    return ([x[0].uid for x in got if not isinstance(x, BaseException)],
            {str(x) for x in got if isinstance(x, BaseException)})


def _fill_disk(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)


class _Stale(Headroom):
    """Measures the map only, not the file system: what the writer sees when
    another program fills the disk between a round's measure and its commit
    (a race no test can time, so the measure is made stale on purpose)."""

    def measure(self, txn: Any) -> Space:
        space = super().measure(txn)
        return Space(space.live, space.map_size, space.map_size, space.map_size)


async def _open_stale(data_dir: Path) -> Store:
    path = data_dir / "store"
    env, dbs = await asyncio.to_thread(open_env, path, MAP_SIZE)
    stale = _Stale(env, dbs, path)
    feed = ChangeFeed(data_dir / "run", asyncio.get_running_loop())
    writer = Writer(env, dbs, asyncio.get_running_loop(), on_commit=feed.broadcast,
                    on_commit_loop=feed.notify, headroom=stale)
    return Store(env, dbs, writer, feed, path, stale)


async def test_enospc_at_commit_loses_nothing_and_recovers(small_fs: Path) -> None:
    store = await _open(small_fs / "data")
    await store.close()
    store = await _open_stale(small_fs / "data")
    filler = small_fs / "filler"
    try:
        acked, refusals = await _round(store, 0, 100)
        assert len(acked) == 100 and not refusals
        _fill_disk(filler)
        got, refusals = await _round(store, 1000, 100)
        # A first round or two may still fit in pages free inside the file.
        assert len(got) < 50 and refusals == {NO_DISK}
        acked += got
        assert _uids(store) == acked  # the failed commits left nothing behind
        filler.unlink()  # space freed: mail is taken again, same process, same store
        got, refusals = await _round(store, 2000, 50)
        assert len(got) == 50 and not refusals
        acked += got
        assert _uids(store) == acked
    finally:
        await store.close()
    store = await _open(small_fs / "data")  # and every acknowledged message is on disk
    try:
        assert _uids(store) == acked
    finally:
        await store.close()
