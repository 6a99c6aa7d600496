"""Dropping this process's view of the store's memory map (Linux).

LMDB reads through a shared, read-only ``mmap`` of ``data.mdb``.  Every page a
reader or a write transaction touches stays mapped in the process, and the
kernel's fault-around maps its neighbours too, so a long bulk job (``import``
of a 1 GiB mbox, ``export``) ends with most of the store counted in its RSS,
although those pages are page cache: shared, clean, reclaimable.  Operators
read RSS as "what this process costs", and a 200 MB bound on an importer
(issue #15 §4) must hold whatever the store's size.

``release_map_pages`` asks the kernel, with ``madvise(MADV_DONTNEED)``, to
drop the page-table entries of the mapping.  For a shared file mapping that
is safe at any moment (madvise(2)): the page cache keeps the data, and the
next access faults the page back in from it; nothing LMDB holds (its dirty
pages are malloc'd, ``writemap`` is off, see ``kv.py``) lives in the map.
It costs the next reads a minor fault per page, so only bulk jobs call it,
every few tens of MiB, never the daemon's hot paths.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import sys
from pathlib import Path

#: madvise(2) advice: drop the mapping's pages from this process (Linux value).
MADV_DONTNEED = 4

_libc: ctypes.CDLL | None = None


def _madvise() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    fn = _libc.madvise
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def mapped_ranges(file: Path, maps: str | None = None) -> list[tuple[int, int]]:
    """The ``(start, end)`` address ranges (end exclusive, octets) at which
    this process maps ``file``, from ``/proc/self/maps`` (or the text
    ``maps`` given, in that format: ``start-end perms offset dev inode
    path``).  Empty when the file is not mapped or /proc is missing."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return []
    target = str(Path(file).resolve())
    out = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            start, _, end = fields[0].partition("-")
            out.append((int(start, 16), int(end, 16)))
    return out


def release_map_pages(file: Path) -> int:
    """Drop the pages of ``file``'s mappings from this process's resident
    set (see the module docstring); returns the octets of address space
    advised (0 off Linux or when nothing is mapped).  Raises OSError when
    madvise fails for a reason other than a mapping that went away."""
    fn = _madvise()
    if fn is None:
        return 0
    done = 0
    for start, end in mapped_ranges(file):
        if fn(start, end - start, MADV_DONTNEED) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOMEM):  # unmapped meanwhile (env closed)
                continue
            raise OSError(err, f"madvise: {errno.errorcode.get(err, err)}")
        done += end - start
    return done
