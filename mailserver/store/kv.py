"""Opening the LMDB environment (the only importer of ``lmdb`` besides the writer).

Durability: ``sync=True, metasync=True`` make every write-transaction commit
fsync data and meta pages, so a committed change survives ``kill -9`` and
power loss: two ordered syncs per commit (the data pages' ``fdatasync``, then
the meta page written through a descriptor opened ``O_DSYNC``), which is what
an SMTP ``250`` waits for.  The daemon's writer keeps zeros written ahead of
the last page so that first sync does not also grow the file (``ahead.py``).
``writemap`` stays off: nested transactions (one per request in a group
commit, see ``writer.py``) need it off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from mailserver.errors import MailserverError, StoreNotFound
from mailserver.store import keys

#: Bump on any change to ``keys.py`` or ``codec.py`` layouts.
SCHEMA_VERSION = 1
#: The file LMDB keeps the data in, inside the environment's directory.
DATA_FILE = "data.mdb"


@dataclass(frozen=True, slots=True)
class Dbs:
    """Handles of the named databases (see ``keys.py`` for their layout)."""

    meta: Any
    domains: Any
    accounts: Any
    aliases: Any
    mbnames: Any
    mailboxes: Any
    messages: Any
    modseq: Any
    expunged: Any
    blobs: Any
    blobrefs: Any
    queue: Any
    queuesched: Any


def open_env(path: Path, map_size: int, *, create: bool = True) -> tuple[lmdb.Environment, Dbs]:
    """Open the environment at ``path`` (a directory), creating it unless
    ``create`` is False; check the schema.

    Blocking (creates files, may write and sync once): call it off the event loop.
    Raises StoreNotFound (``create=False``) when ``path`` holds no environment,
    MailserverError when the stored schema version is not ``SCHEMA_VERSION``.
    """
    if create:
        path.mkdir(parents=True, exist_ok=True)
    elif not (path / DATA_FILE).is_file():
        raise StoreNotFound(path.parent)
    env = lmdb.open(
        str(path),
        map_size=map_size,
        max_dbs=len(keys.DB_NAMES) + 2,
        max_readers=510,
        sync=True,
        metasync=True,
        writemap=False,
        readahead=False,  # random access to a store larger than RAM
        subdir=True,
        create=create,
    )
    try:
        with env.begin(write=True) as txn:
            handles = {n: env.open_db(n.encode(), txn=txn) for n in keys.DB_NAMES}
            meta = handles["meta"]
            stored = txn.get(keys.SCHEMA_VERSION_KEY, db=meta)
            if stored is None:
                txn.put(keys.SCHEMA_VERSION_KEY, keys.U32.pack(SCHEMA_VERSION), db=meta)
            else:
                version = keys.U32.unpack(stored)[0] if len(stored) == 4 else repr(stored)
                if version != SCHEMA_VERSION:
                    raise MailserverError(
                        f"store at {path} has schema version {version}, "
                        f"this program knows only {SCHEMA_VERSION}"
                    )
    except BaseException:
        env.close()
        raise
    return env, Dbs(**handles)


def open_env_readonly(path: Path) -> tuple[lmdb.Environment, Dbs]:
    """Open the environment at ``path`` for reading only (``verify``, ``restore``).

    Nothing is written to ``data.mdb``, so a backup's checksums stay valid.
    A directory with a ``lock.mdb`` may have a live writer (the daemon): its
    lock table is used, so a read transaction pins a consistent snapshot.  One
    without (a backup made by ``copy``) has no other user: no lock is taken
    and none is created.  Blocking.  Raises StoreNotFound when ``path`` holds
    no environment, MailserverError on a missing database or schema version.
    """
    if not (path / DATA_FILE).is_file():
        raise StoreNotFound(path.parent)
    env = lmdb.open(str(path), readonly=True, lock=(path / "lock.mdb").exists(),
                    max_dbs=len(keys.DB_NAMES) + 2, max_readers=510, readahead=False,
                    subdir=True, create=False)
    try:
        handles: dict[str, Any] = {}
        for name in keys.DB_NAMES:
            try:  # own transaction: handles opened in a read one die with it
                handles[name] = env.open_db(name.encode(), create=False)
            except lmdb.NotFoundError:
                raise MailserverError(f"store at {path} has no database {name!r}") from None
        with env.begin() as txn:
            stored = txn.get(keys.SCHEMA_VERSION_KEY, db=handles["meta"])
            if stored != keys.U32.pack(SCHEMA_VERSION):
                raise MailserverError(f"store at {path} has schema version {stored!r}, "
                                      f"this program knows only {SCHEMA_VERSION}")
    except BaseException:
        env.close()
        raise
    return env, Dbs(**handles)


def lmdb_version() -> str:
    """The LMDB library version, ``"0.9.31"`` (recorded in backup manifests)."""
    return ".".join(str(n) for n in lmdb.version())
