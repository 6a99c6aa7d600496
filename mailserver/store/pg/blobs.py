"""Content-addressed message blobs of the PostgreSQL store, with reference counts (issue #17 §2).

A blob's id is the SHA-256 of its octets (as in the LMDB store,
``store.base.content_address``).  Its row in ``blobs`` (schema v1) counts the
messages and queue entries that use it; the octets live in the row
(``location = 'db'``) or in an S3-compatible object store (``'s3'``,
``ObjectStore``) under ``blobs/<hex[:2]>/<hex>``.

Consistency: ``add`` uploads the object *before* the caller's transaction
commits the row (content-addressed, so a repeated upload is harmless; a
transaction that rolls back leaves an object no row names, which a sweep may
remove: never a row without its object).  ``release`` drops the row at zero
references inside the caller's transaction and returns the ids whose object
the caller deletes after the commit (``forget``): a crash in between leaves
an orphan object, again never a dangling row.  Delivery to many recipients
calls ``add`` once with their count: the blob is written once.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol


class BlobNotFound(KeyError):
    """No blob with that id (or its object is missing)."""


class ObjectStore(Protocol):
    """Where big octets live: ``put``/``get``/``delete`` by key (``store/s3.py``)."""

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (replacing it)."""
        ...

    async def get(self, key: str) -> bytes:
        """The octets under ``key``; raises BlobNotFound."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; no error when it is not there."""
        ...


def blob_id_of(data: bytes) -> bytes:
    """The content address of ``data``: its SHA-256 (32 octets)."""
    return hashlib.sha256(data).digest()


def object_key(blob_id: bytes) -> str:
    """The object store key of ``blob_id``: ``blobs/<2 hex>/<64 hex>``."""
    h = blob_id.hex()
    return f"blobs/{h[:2]}/{h}"


class PgBlobs:
    """Blobs over an asyncpg connection's transaction, octets inline or in
    ``objects`` (None: always inline)."""

    def __init__(self, objects: ObjectStore | None = None) -> None:
        self.objects = objects

    async def add(self, conn: Any, data: bytes, refs: int = 1) -> bytes:
        """Count ``refs`` more uses of the blob of ``data`` (stored if new);
        in the caller's transaction.  Returns the blob id."""
        blob_id = blob_id_of(data)
        if refs < 1:
            raise ValueError("refs must be at least 1")
        known = await conn.fetchval(
            "UPDATE blobs SET refs = refs + $2 WHERE id = $1 RETURNING refs", blob_id, refs)
        if known is not None:
            return blob_id
        location, inline = ("db", data) if self.objects is None else ("s3", None)
        if self.objects is not None:
            await self.objects.put(object_key(blob_id), data)  # before the row commits
        # Another transaction may insert the same blob meanwhile: then add to its count.
        await conn.execute(
            "INSERT INTO blobs (id, size, refs, location, data) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (id) DO UPDATE SET refs = blobs.refs + EXCLUDED.refs",
            blob_id, len(data), refs, location, inline)
        return blob_id

    async def release(self, conn: Any, blob_id: bytes, refs: int = 1) -> list[bytes]:
        """Count ``refs`` fewer uses; at zero the row goes, in the caller's
        transaction.  Returns ``[blob_id]`` when its object must be deleted
        after the commit (``forget``), else []."""
        row = await conn.fetchrow(
            "UPDATE blobs SET refs = greatest(refs - $2, 0) WHERE id = $1 "
            "RETURNING refs, location", blob_id, refs)
        if row is None or row["refs"] > 0:
            return []
        await conn.execute("DELETE FROM blobs WHERE id = $1 AND refs = 0", blob_id)
        return [blob_id] if row["location"] == "s3" else []

    async def forget(self, blob_ids: list[bytes]) -> None:
        """Delete the objects ``release`` named, after its transaction committed."""
        if self.objects is not None:
            for blob_id in blob_ids:
                await self.objects.delete(object_key(blob_id))

    async def get(self, conn: Any, blob_id: bytes) -> bytes:
        """The blob's octets.  Raises BlobNotFound."""
        row = await conn.fetchrow("SELECT location, data FROM blobs WHERE id = $1", blob_id)
        if row is None:
            raise BlobNotFound(blob_id.hex())
        if row["location"] == "db":
            return bytes(row["data"])
        if self.objects is None:
            raise BlobNotFound(f"{blob_id.hex()} is in the object store, which is not configured")
        return await self.objects.get(object_key(blob_id))

    async def refs(self, conn: Any, blob_id: bytes) -> int:
        """How many uses the blob has (0: none, or no such blob)."""
        n = await conn.fetchval("SELECT refs FROM blobs WHERE id = $1", blob_id)
        return int(n or 0)
