"""The change feed: ``wait_for_change`` woken by this process's commits and by
another process writing to the same store (unix datagram sockets, no polling)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from support.stores import open_store

from mailserver.errors import MailboxNotFound
from mailserver.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
A = "alice@example.org"


@pytest.fixture
async def store(tmp_path):
    async with open_store(tmp_path, A) as s:
        yield s


async def _settle() -> None:
    # Let a freshly started waiter run up to its ``await`` (not a readiness sleep:
    # nothing outside this loop is waited for).
    for _ in range(5):
        await asyncio.sleep(0)


async def test_returns_at_once_when_already_changed(store: Store) -> None:
    mb = store.get_mailbox(A, "INBOX")
    await store.append(A, "INBOX", b"x", b"", internal_date=1)
    await asyncio.wait_for(store.wait_for_change(mb.id, mb.highestmodseq), 10)


async def test_woken_by_own_commit(store: Store) -> None:
    inbox = store.get_mailbox(A, "INBOX")
    sent = store.get_mailbox(A, "Sent")
    w_inbox = asyncio.create_task(store.wait_for_change(inbox.id, inbox.highestmodseq))
    w_sent = asyncio.create_task(store.wait_for_change(sent.id, sent.highestmodseq))
    await _settle()
    assert not w_inbox.done() and not w_sent.done()
    await store.append(A, "INBOX", b"x", b"", internal_date=1)
    await asyncio.wait_for(w_inbox, 10)
    await _settle()
    assert not w_sent.done()  # other mailboxes do not wake
    rec, _ = await store.append(A, "Sent", b"y", b"", internal_date=1)
    await asyncio.wait_for(w_sent, 10)
    # A flag change wakes too.
    hms = store.get_mailbox(A, "Sent").highestmodseq
    w = asyncio.create_task(store.wait_for_change(sent.id, hms))
    await _settle()
    await store.store_flags(sent.id, [rec.uid], "add", frozenset({"\\Seen"}))
    await asyncio.wait_for(w, 10)


async def test_cancel_and_delete(store: Store) -> None:
    mb = await store.create_mailbox(A, "Gone")
    w = asyncio.create_task(store.wait_for_change(mb.id, mb.highestmodseq))
    await _settle()
    w.cancel()
    with pytest.raises(asyncio.CancelledError):
        await w
    w = asyncio.create_task(store.wait_for_change(mb.id, mb.highestmodseq))
    await _settle()
    await store.delete_mailbox(A, "Gone")
    with pytest.raises(MailboxNotFound):
        await asyncio.wait_for(w, 10)


_WRITER_CHILD = """
import asyncio, sys
from pathlib import Path
from mailserver.store.store import Store

async def main():
    s = await Store.open(Path(sys.argv[1]))
    try:
        await s.append("alice@example.org", "INBOX", b"Subject: from afar\\r\\n\\r\\n.\\r\\n",
                       b"", internal_date=1)
    finally:
        await s.close()

asyncio.run(main())
"""


async def _run_child(data_dir: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITER_CHILD, str(data_dir),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_woken_by_other_process(store: Store, tmp_path: Path) -> None:
    mb = store.get_mailbox(A, "INBOX")
    waiter = asyncio.create_task(store.wait_for_change(mb.id, mb.highestmodseq))
    await _settle()
    assert not waiter.done()
    await _run_child(tmp_path)
    # Only the other process's datagram can wake us: there is no polling.
    await asyncio.wait_for(waiter, 30)
    assert store.get_mailbox(A, "INBOX").messages == 1


async def test_long_data_dir_and_stale_sockets(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # AF_UNIX paths are limited to 107 octets
    s = await Store.open(deep)
    try:
        await s.add_domain("example.org")
        await s.add_account(A, "h")
        # A socket file left by a crashed process.
        stale_path = deep / "run" / "1-dead.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dir_fd = os.open(deep / "run", os.O_RDONLY | os.O_DIRECTORY)
        try:
            sock.bind(f"/proc/self/fd/{dir_fd}/1-dead.sock")  # short address for a long path
        finally:
            os.close(dir_fd)
        sock.close()
        assert stale_path.exists()
        mb = s.get_mailbox(A, "INBOX")
        waiter = asyncio.create_task(s.wait_for_change(mb.id, mb.highestmodseq))
        await _settle()
        await _run_child(deep)
        await asyncio.wait_for(waiter, 30)
        assert not stale_path.exists()
    finally:
        await s.close()


async def test_close_while_waiting(tmp_path: Path) -> None:
    from mailserver.errors import MailserverError

    s = await Store.open(tmp_path)
    await s.add_domain("example.org")
    await s.add_account(A, "h")
    mb = s.get_mailbox(A, "INBOX")
    w = asyncio.create_task(s.wait_for_change(mb.id, mb.highestmodseq))
    await _settle()
    await s.close()
    with pytest.raises(MailserverError):
        await asyncio.wait_for(w, 10)
    assert list((tmp_path / "run").iterdir()) == []  # our socket is gone
