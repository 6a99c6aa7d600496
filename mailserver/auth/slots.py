"""Hashing slots shared by the worker processes: a cross-process semaphore.

Each worker's ``Hasher`` bounds its own threads, but N workers with one
thread each still hash on N cores at once.  With several workers the
hashing threads first take one of ``count`` slots: ``count`` files
``data_dir/run/argon2-slot.<i>`` locked with ``flock`` (released by the
kernel when the holder closes the file or dies — no stale slot after a crash).

A thread tries every slot without blocking; when all are taken it blocks
on one (round robin), in its pool thread, never on the event loop.  Blocking
on one slot while another frees first costs some latency under saturation,
not correctness.  Cost per hash: a few ``open``/``flock`` system calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
from collections.abc import Iterator
from pathlib import Path


class CoreSlots:
    """``count`` flock slots in ``run_dir``; ``hold()`` is a context manager."""

    def __init__(self, run_dir: Path, count: int) -> None:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.count = max(1, count)
        self._paths = [str(run_dir / f"argon2-slot.{i}") for i in range(self.count)]
        self._next = itertools.count()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Block until a slot is ours; release it on exit."""
        fd = self._take()
        try:
            yield
        finally:
            os.close(fd)  # closing the description drops the lock

    def _take(self) -> int:
        start = next(self._next) % self.count
        order = self._paths[start:] + self._paths[:start]
        for path in order:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            return fd
        fd = os.open(order[0], os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd
