"""What every part of the ``Store`` facade shares: the open environment, the
writer, the change feed, the record cache and the read transaction.

``Store`` (``store.py``) is assembled from one class per concern, each a
subclass of ``StoreBase``: ``directory.py`` (domains, accounts, aliases,
recipient resolution), ``mailbox_store.py``, ``message_store.py`` (messages,
flags, ``\\Recent``, waiting for changes); ``store.py`` itself keeps opening,
closing and the outbound queue.  Only ``Store.open`` sets the attributes.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from mailserver.errors import MailserverError
from mailserver.store.feed import ChangeFeed
from mailserver.store.kv import Dbs
from mailserver.store.recordcache import RecordCache
from mailserver.store.remote_writer import RemoteWriter
from mailserver.store.writer import Writer

# Hashing a big message takes milliseconds: do that off the event loop.
_HASH_OFF_LOOP = 256 * 1024


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def content_address(blob: bytes) -> bytes:
    """The content address of ``blob`` (SHA-256, 32 octets)."""
    if len(blob) >= _HASH_OFF_LOOP:
        return await asyncio.to_thread(_sha256, blob)
    return _sha256(blob)


class StoreBase:
    """The state the facade's parts share (see the module docstring)."""

    _env: Any  # lmdb.Environment
    _dbs: Dbs
    _writer: Writer | RemoteWriter
    _feed: ChangeFeed
    _records: RecordCache
    _closed: bool
    path: Path  # data_dir / "store"

    def _read(self) -> Any:
        """A read-only LMDB transaction (values as ``bytes``); use it in ``with``.
        Raises MailserverError once the store is closed."""
        if self._closed:
            raise MailserverError("store is closed")
        return self._env.begin(buffers=False)
