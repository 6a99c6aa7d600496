"""Zeros written ahead of LMDB's last page, so a commit does not grow ``data.mdb``.

Why: LMDB (``writemap`` off, ``kv.py``) writes a commit's pages with
``pwrite`` and then ``fdatasync``s the file, then writes the meta page
through a second descriptor opened ``O_DSYNC``.  New mail always takes new
pages, and when they lie past the end of the file the ``fdatasync`` must
also make the block allocation and the new file size durable: one more
ordered write (the inode; with a journal, a journal commit) before the
flush.  With one SMTP session that wait is most of the time between the end
of DATA and the ``250``.  When the pages LMDB is about to use already hold
zeros on disk, the ``fdatasync`` only writes the pages and flushes.

What: after a writer round, if fewer than ``chunk // 2`` octets of the file
lie past LMDB's last page (``env.info()["last_pgno"]``), the file is
extended by writing zeros (not ``fallocate``: its unwritten extents are
converted, and made durable, by the first write into them, which is the
cost we avoid) towards ``chunk`` past the last page, at most ``STEP`` at a
time, and synced.
``chunk`` is an eighth of the used size, between ``MIN_CHUNK`` and
``MAX_CHUNK``, so a small store stays small (a new store: 1 MiB ahead).

Safety:

* Durability does not change: every commit still syncs its data pages, then
  its meta page, as before; the zeros only move *when* the blocks are
  allocated.  A crash in the middle of an extension leaves a file with some
  zeros past LMDB's last page, which LMDB never reads (its meta pages say
  where the data ends; a copy or backup takes only the used pages).
* The extension runs inside a write transaction that is then aborted (it
  writes nothing through LMDB): LMDB's writer lock keeps any other process
  (an admin command) from allocating pages in the region being zeroed, and
  in this process only the writer begins write transactions.
* Never past the map size, and not when the file system would keep less
  than ``MIN_FREE`` (or eight chunks) free: on a nearly full disk the store
  behaves as before (``headroom.py``; its capacity counts the zeros as room,
  ``headroom.measure``).  A failed write (ENOSPC) truncates the file back to
  its size before the extension, and the next try waits ``RETRY_AFTER``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import structlog

from mailserver.store.kv import DATA_FILE

log = structlog.get_logger("mailserver.store")

MIN_CHUNK = 1 << 20
MAX_CHUNK = 16 << 20
#: Most octets zeroed by one call (a bounded pause of the writer: the rounds
#: wait while it runs; the next rounds' calls do the rest).
STEP = 1 << 20
#: Free space the file system keeps after an extension, at least.
MIN_FREE = 256 << 20
#: Seconds without a try after an extension failed or was not allowed (the
#: disk is nearly full, say, or the file is at the map size).
RETRY_AFTER = 60.0
_ZEROS = bytes(MIN_CHUNK)


def used_end(env: Any, page_size: int) -> int:
    """Octets of ``data.mdb`` that hold LMDB's pages (up to the last one in use)."""
    return (int(env.info()["last_pgno"]) + 1) * page_size


def chunk_for(used: int) -> int:
    """Octets to keep ahead of ``used`` octets of pages (see the module docstring)."""
    return min(MAX_CHUNK, max(MIN_CHUNK, (used // 8) // MIN_CHUNK * MIN_CHUNK))


class Ahead:
    """Keeps zeros ahead of LMDB's last page in ``path/data.mdb`` (the module
    docstring).  ``after_round()`` is called by the writer, between rounds, on
    the writer's thread (or loop); it costs one ``env.info()`` when nothing
    is to be done."""

    def __init__(self, env: Any, path: Path) -> None:
        self._env = env
        self._file = path / DATA_FILE
        self._page = int(env.stat()["psize"])
        self._end = 0  # the file's size as we last saw it (0: look)
        self._failed = False  # logged once
        self._retry_at = 0.0  # after a failure: no try before this (monotonic)
        #: Extensions made (for tests).
        self.extensions = 0

    def after_round(self) -> None:
        """Extend the file when LMDB's pages come within half a chunk of its end."""
        used = used_end(self._env, self._page)
        if self._end - used >= chunk_for(used) // 2:
            return
        try:
            self._end = os.stat(self._file).st_size
        except OSError:
            return
        if self._end - used >= chunk_for(used) // 2:  # another process extended it
            return
        if time.monotonic() < self._retry_at:
            return
        self._extend()

    def _extend(self) -> None:
        env = self._env
        # The writer lock: no other process allocates pages while we zero.
        txn = env.begin(write=True)
        try:
            used = used_end(env, self._page)
            fd = os.open(self._file, os.O_WRONLY | os.O_CLOEXEC)
            try:
                size = os.fstat(fd).st_size
                target = min(used + chunk_for(used), size + STEP, int(env.info()["map_size"]))
                fs = os.fstatvfs(fd)
                if target <= size or fs.f_bavail * fs.f_frsize - (target - size) < max(
                        MIN_FREE, 8 * chunk_for(used)):
                    # At the map size, or short of disk: not before RETRY_AFTER
                    # (each try takes the writer lock).
                    self._end = size
                    self._retry_at = time.monotonic() + RETRY_AFTER
                    return
                try:
                    at = size
                    while at < target:
                        at += os.pwrite(fd, _ZEROS[:min(len(_ZEROS), target - at)], at)
                    os.fdatasync(fd)
                except OSError as exc:
                    os.ftruncate(fd, size)  # past LMDB's pages (size >= used): only zeros
                    self._end = size
                    self._retry_at = time.monotonic() + RETRY_AFTER
                    if not self._failed:
                        self._failed = True
                        log.warning("store_preallocate_failed", error=str(exc))
                    return
                self._end = target
                self.extensions += 1
            finally:
                os.close(fd)
        except OSError:
            pass  # could not open or stat: commits grow the file as before
        finally:
            txn.abort()
