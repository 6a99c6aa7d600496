"""Zeros written ahead of LMDB's last page (``store/ahead.py``): the daemon's
writer keeps ``data.mdb`` longer than LMDB's pages, the region past them
holds only zeros, what was committed reads back after a reopen, the fill
measure counts the zeros as room, and a file system short of space gets no
zeros."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mailserver.store import ahead, headroom
from mailserver.store.kv import DATA_FILE
from mailserver.store.store import Store

A = "alice@example.org"


def _message(i: int) -> bytes:
    return b"From: a@example.org\r\nSubject: m %d\r\n\r\n" % i + b"x" * 3000 + b"\r\n"


def _used(store: Store) -> int:
    env = store._env  # noqa: SLF001 - the test looks at the file LMDB keeps
    return ahead.used_end(env, int(env.stat()["psize"]))


async def _settled(store: Store) -> None:
    """Let the writer thread check the file after its last round."""
    for _ in range(100):
        if os.stat(store.path / DATA_FILE).st_size > _used(store):
            return
        await asyncio.sleep(0.02)


async def _open(path: Path, **kw: object) -> Store:
    store = await Store.open(path, preallocate=True, **kw)  # type: ignore[arg-type]
    if not store.is_local_domain("example.org"):
        await store.add_domain("example.org")
        await store.add_account(A, "h")
    return store


async def test_zeros_ahead_and_data_intact(tmp_path: Path) -> None:
    store = await _open(tmp_path)
    try:
        for i in range(40):
            await store.append(A, "INBOX", _message(i), b"", internal_date=1)
        await _settled(store)
        used = _used(store)
        size = os.stat(store.path / DATA_FILE).st_size
        assert size - used >= ahead.MIN_CHUNK // 2
        with open(store.path / DATA_FILE, "rb") as f:
            f.seek(used)
            assert f.read() == bytes(size - used)
        # The zeros are room, not pages LMDB freed (those count half).
        env = store._env  # noqa: SLF001
        with env.begin() as txn:
            dbs = store._dbs  # noqa: SLF001
            whole = headroom.measure(txn, dbs, store.path, 1 << 60)
            zeros_room = headroom.measure(txn, dbs, store.path, 1 << 60, used)
        live = whole.live
        assert (zeros_room.capacity - zeros_room.disk_free) - (whole.capacity - whole.disk_free) \
            == (size - live) // 2 - max(0, used - live) // 2 > 0
    finally:
        await store.close()
    store = await _open(tmp_path)
    try:
        inbox = store.get_mailbox(A, "INBOX")
        records = store.list_messages(inbox.id)
        assert len(records) == 40
        for i in range(40, 60):  # commits into the zeros
            await store.append(A, "INBOX", _message(i), b"", internal_date=1)
        assert len(store.list_messages(inbox.id)) == 60
    finally:
        await store.close()


async def test_no_zeros_without_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ahead, "MIN_FREE", 1 << 62)  # more than any disk has
    store = await _open(tmp_path)
    try:
        for i in range(10):
            await store.append(A, "INBOX", _message(i), b"", internal_date=1)
        await asyncio.sleep(0.1)
        assert os.stat(store.path / DATA_FILE).st_size == _used(store)
    finally:
        await store.close()


async def test_not_past_the_map(tmp_path: Path) -> None:
    map_size = 2 << 20
    store = await _open(tmp_path, map_size=map_size)
    try:
        for i in range(5):
            await store.append(A, "INBOX", _message(i), b"", internal_date=1)
        await _settled(store)
        assert os.stat(store.path / DATA_FILE).st_size <= map_size
    finally:
        await store.close()


def test_chunk_bounds() -> None:
    assert ahead.chunk_for(0) == ahead.MIN_CHUNK
    assert ahead.chunk_for(40 << 20) == 5 << 20
    assert ahead.chunk_for(1 << 40) == ahead.MAX_CHUNK
