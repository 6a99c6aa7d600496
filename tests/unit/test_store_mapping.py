"""``store/mapping.py``: finding the store's memory map and dropping its
pages from the resident set (what keeps ``import``/``export`` RSS bounded,
issue #15 §4) without changing what readers see."""

from __future__ import annotations

import asyncio
import mmap
import os
import sys
from pathlib import Path

import pytest
from support.stores import open_store

from mailserver.protocol.mime.cost import message_facts
from mailserver.store import mapping
from mailserver.store.kv import DATA_FILE

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="madvise and /proc are Linux's")


def resident_kib(file: Path) -> int:
    """Rss (KiB) of this process's mappings of ``file``, from /proc/self/smaps."""
    target, total, inside = str(file.resolve()), 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                inside = len(head) == 6 and head[5] == target
            elif inside and head[0] == "Rss:":
                total += int(head[1])
    return total


def test_mapped_ranges_parses_proc_maps() -> None:
    maps = ("7f24dc000000-7f24dc400000 r--s 00000000 fe:00 2147487     /srv/mail/store/data.mdb\n"
            "7f24e263c000-7f24e2644000 rw-s 00000000 fe:00 2147486     /srv/mail/store/lock.mdb\n"
            "7f24e2d52000-7f24e2d5a000 r--p 00000000 fe:00 5311596     /srv/mail/store/data.mdb x\n"
            "7ffd1e5f0000-7ffd1e611000 rw-p 00000000 00:00 0           [stack]\n"
            "garbage\n")
    assert mapping.mapped_ranges(Path("/srv/mail/store/data.mdb"), maps) == \
        [(0x7F24DC000000, 0x7F24DC400000)]
    assert mapping.mapped_ranges(Path("/srv/other"), maps) == []


def test_release_drops_pages_and_keeps_contents(tmp_path: Path) -> None:
    file = tmp_path / "f"
    data = os.urandom(8 << 20)
    file.write_bytes(data)
    with file.open("rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        checksum = sum(m[i] for i in range(0, len(m), 4096))
        assert resident_kib(file) >= 4 << 10
        assert mapping.release_map_pages(file) == len(data)
        assert resident_kib(file) < 1 << 10
        # The next reads fault the pages back in from the page cache, unchanged.
        assert sum(m[i] for i in range(0, len(m), 4096)) == checksum
        assert m[:] == data
    assert mapping.release_map_pages(file) == 0  # no longer mapped


def test_store_release_keeps_reads_and_writes_working(tmp_path: Path) -> None:
    async def go() -> None:
        async with open_store(tmp_path, "alice@example.org") as store:
            bodies = [b"Subject: %d\r\n\r\n" % i + os.urandom(3000).hex().encode() + b"\r\n"
                      for i in range(200)]
            for body in bodies:
                await store.append("alice@example.org", "INBOX", body, message_facts(body),
                                   internal_date=1_700_000_000)
            records = store.list_messages(store.get_mailbox("alice@example.org", "INBOX").id)
            assert [store.get_blob(r.blob_id) for r in records] == bodies
            data_file = store.path / DATA_FILE
            assert resident_kib(data_file) >= 512  # ~1 MiB of blobs read through the map
            assert store.release_map_pages() > 0
            assert resident_kib(data_file) < 256
            assert [store.get_blob(r.blob_id) for r in records] == bodies
            more = b"Subject: after\r\n\r\nbody\r\n"
            await store.append("alice@example.org", "INBOX", more, message_facts(more),
                               internal_date=1_700_000_000)
            assert len(store.list_messages(records[0].mailbox_id)) == 201
        assert store.release_map_pages() == 0  # closed: nothing to advise

    asyncio.run(go())
