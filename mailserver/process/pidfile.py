"""The daemon's pid file, ``data_dir/run/mailserver.pid``.

The daemon writes its pid there and holds an exclusive ``flock`` on the file
for as long as it runs, so the lock, not the file's presence, says whether a
daemon is running: a file left by a daemon killed with SIGKILL is stale (no
lock holder) and the next start takes it over.  A second daemon on the same
data directory finds the lock held and refuses to start.  ``mailserver stop``
and ``status`` read it (``read_running``).

The descriptor is opened close-on-exec (PEP 446), so worker processes do not
inherit the lock: it goes when the supervisor exits.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mailserver.errors import UserError

NAME = "mailserver.pid"


def path_for(data_dir: Path) -> Path:
    """The pid file of the daemon serving ``data_dir``."""
    return data_dir / "run" / NAME


class PidFile:
    """``acquire()`` at start (raises ``UserError`` when a daemon already
    holds it, ``OSError`` when it cannot be written), ``release()`` at exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Lock the file and write our pid (decimal, newline)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_pid(fd)
            os.close(fd)
            raise UserError(f"a daemon (pid {other or 'unknown'}) already serves this data "
                            f"directory ({self.path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Remove the file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


def read_running(path: Path) -> int | None:
    """The pid of the daemon holding ``path``'s lock, None when none does
    (no file, or a stale one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # nobody holds it: stale
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError):
        return None
