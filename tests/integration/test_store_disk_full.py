"""A full file system under the store (``store/headroom.py``), on a small
tmpfs mounted by the test (root only; skipped where mounting is impossible,
the map-size tests in ``test_store_headroom.py`` still run).

* New mail is refused (``StoreFull``) before the file system is full, while
  flag changes, EXPUNGE, MOVE and deletes still work in the reserve.
* Without headroom (``new_mail_limit = 1``) the commit itself fails on
  ENOSPC: that round is ``StoreFull`` too, nothing acknowledged is lost, and
  once space is freed the same store takes mail again, no restart.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailserver.store.headroom import StoreFull
from mailserver.store.store import Store

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
        acked, refusals = await _fill(store, 0)
        assert refusals == {NEARLY_FULL}  # the headroom refused, not a failed commit
        space = store.space()
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


async def test_enospc_at_commit_loses_nothing_and_recovers(small_fs: Path) -> None:
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (512 << 10))  # what the "administrator" frees later
    store = await _open(small_fs / "data", limit=1.0)  # no headroom: the commit fails
    try:
        acked, refusals = await _fill(store, 0)
        assert refusals == {NO_DISK}
        assert store.space().disk_free < 1 << 20
        assert _uids(store) == acked  # every acknowledged message, nothing else
        filler.unlink()
        uid = (await store.append(A, "INBOX", _message(10**6), b"", internal_date=1))[0].uid
        acked.append(uid)
        assert _uids(store) == acked
    finally:
        await store.close()
    store = await _open(small_fs / "data", limit=1.0)  # and all of it is on disk
    try:
        assert _uids(store) == acked
    finally:
        await store.close()
