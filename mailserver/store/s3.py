"""An S3-compatible object store for message blobs (issue #17 §2), with aiobotocore.

``S3Objects`` meets ``store.pg.blobs.ObjectStore``: put, get and delete by
key in one bucket, over one client session opened by ``open`` and closed by
``close``.  Any S3-compatible server (AWS S3, MinIO, Ceph RGW, Garage; the
tests use moto's server mode on loopback) with path-style addressing.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from mailserver.store.pg.blobs import BlobNotFound


class S3Objects:
    """Objects in ``bucket`` at ``endpoint`` (``https://host:port``; None: AWS)."""

    def __init__(self, *, endpoint: str | None, bucket: str, access_key: str,
                 secret_key: str, region: str = "us-east-1") -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self._credentials = (access_key, secret_key, region)
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        """Make the client (connections are opened as needed)."""
        access_key, secret_key, region = self._credentials
        self._client = await self._stack.enter_async_context(get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name=region,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=BotoConfig(s3={"addressing_style": "path"},
                              retries={"max_attempts": 3, "mode": "standard"})))

    async def close(self) -> None:
        """Close the client's connections."""
        await self._stack.aclose()
        self._client = None

    async def create_bucket(self) -> None:
        """Create the bucket if it does not exist (set-up and tests)."""
        try:
            await self._client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                    "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``.  Raises botocore errors."""
        await self._client.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def get(self, key: str) -> bytes:
        """The octets under ``key``.  Raises BlobNotFound, botocore errors."""
        try:
            resp = await self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobNotFound(key) from None
            raise
        async with resp["Body"] as stream:
            return bytes(await stream.read())

    async def delete(self, key: str) -> None:
        """Remove ``key`` (S3 answers success when it is not there)."""
        await self._client.delete_object(Bucket=self.bucket, Key=key)
