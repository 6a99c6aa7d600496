"""Small file-system helpers shared by the TLS, DKIM and daemon set-up code."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``, durably and atomically, with exactly ``mode``.

    ``data`` goes to a new temporary file in the same directory (``mkstemp``:
    created with O_EXCL, so a leftover or planted file of the same name is
    never reused with its older, looser mode), is set to ``mode`` with
    ``fchmod`` (the umask plays no part), fsynced, renamed over ``path``
    (``rename(2)`` is atomic), and the directory entry is fsynced too.  A crash
    leaves either the old file or the new one, never half of one.  Raises
    ``OSError``; on failure the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
