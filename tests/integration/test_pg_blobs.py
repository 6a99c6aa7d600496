"""Content-addressed blobs with reference counts in the PostgreSQL store,
octets inline or in an S3-compatible object store (issue #17 §2), on a
throwaway PostgreSQL cluster and moto's S3 server, both on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from support.s3 import moto_s3

from mailserver.store.pg.blobs import BlobNotFound, PgBlobs, blob_id_of, object_key
from mailserver.store.s3 import S3Objects

MESSAGE = b"From: a@example.test\r\nSubject: blob\r\n\r\n" + b"body line\r\n" * 500


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
async def objects(s3_endpoint: str) -> AsyncIterator[S3Objects]:
    store = S3Objects(endpoint=s3_endpoint, bucket="mail-blobs", access_key="test",
                      secret_key="test")
    await store.open()
    await store.create_bucket()
    yield store
    await store.close()


async def test_inline_blob_counts_and_goes_at_zero(db: str) -> None:
    blobs = PgBlobs()
    conn = await asyncpg.connect(db)
    try:
        async with conn.transaction():
            blob_id = await blobs.add(conn, MESSAGE, refs=3)  # one delivery, 3 recipients
        assert blob_id == blob_id_of(MESSAGE) and await blobs.refs(conn, blob_id) == 3
        assert await conn.fetchval("SELECT count(*) FROM blobs") == 1  # written once
        assert await blobs.get(conn, blob_id) == MESSAGE
        async with conn.transaction():
            assert await blobs.release(conn, blob_id, 2) == []
        assert await blobs.refs(conn, blob_id) == 1
        async with conn.transaction():
            assert await blobs.release(conn, blob_id) == []  # inline: nothing to delete after
        with pytest.raises(BlobNotFound):
            await blobs.get(conn, blob_id)
    finally:
        await conn.close()


async def test_object_store_blob_lifecycle(db: str, objects: S3Objects) -> None:
    blobs = PgBlobs(objects)
    conn = await asyncpg.connect(db)
    try:
        async with conn.transaction():
            blob_id = await blobs.add(conn, MESSAGE)
        assert await conn.fetchval("SELECT location FROM blobs") == "s3"
        assert await conn.fetchval("SELECT data FROM blobs") is None
        assert await objects.get(object_key(blob_id)) == MESSAGE
        assert await blobs.get(conn, blob_id) == MESSAGE
        async with conn.transaction():
            await blobs.add(conn, MESSAGE)  # a second message with the same octets
            gone = await blobs.release(conn, blob_id)
        assert gone == [] and await blobs.refs(conn, blob_id) == 1
        async with conn.transaction():
            gone = await blobs.release(conn, blob_id)
        await blobs.forget(gone)  # after the commit
        with pytest.raises(BlobNotFound):
            await objects.get(object_key(blob_id))
        # A rolled-back add leaves no row (an orphan object at most, never a dangling row).
        tx = conn.transaction()
        await tx.start()
        await blobs.add(conn, b"rolled back")
        await tx.rollback()
        assert await conn.fetchval("SELECT count(*) FROM blobs") == 0
    finally:
        await conn.close()


async def test_concurrent_adds_of_one_blob_count_every_reference(db: str,
                                                                 objects: S3Objects) -> None:
    blobs = PgBlobs(objects)
    conns = [await asyncpg.connect(db) for _ in range(4)]

    async def deliver(conn: asyncpg.Connection) -> None:
        for _ in range(5):
            async with conn.transaction():
                await blobs.add(conn, MESSAGE, refs=2)

    try:
        await asyncio.gather(*(deliver(c) for c in conns))
        blob_id = blob_id_of(MESSAGE)
        assert await blobs.refs(conns[0], blob_id) == 40
        assert await conns[0].fetchval("SELECT count(*) FROM blobs") == 1
    finally:
        for c in conns:
            await c.close()
