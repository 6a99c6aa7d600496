"""Opening the LMDB environment (the only importer of ``lmdb`` besides the writer).

Durability: ``sync=True, metasync=True`` make every write-transaction commit
fsync data and meta pages, so a committed change survives ``kill -9`` and
power loss.  ``writemap`` stays off: nested transactions (one per request in a
group commit, see ``writer.py``) need it off.
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
