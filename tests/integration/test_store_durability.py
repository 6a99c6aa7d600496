"""Group commit, durability across close/reopen and kill -9, the schema check,
and use from ``asyncio.run`` (as the CLI does) and under uvloop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import uvloop

from mailserver.errors import MailboxNotFound, MailserverError
from mailserver.store import keys
from mailserver.store.kv import open_env
from mailserver.store.model import NewMessage
from mailserver.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
A = "alice@example.org"


async def _setup(data_dir: Path, *, writer_on_loop: bool = False) -> Store:
    s = await Store.open(data_dir, writer_on_loop=writer_on_loop)
    await s.add_domain("example.org")
    await s.add_account(A, "h")
    return s


@pytest.mark.parametrize("writer_on_loop", [False, True], ids=["thread", "on-loop"])
async def test_group_commit_200_concurrent_deliveries(tmp_path: Path, writer_on_loop: bool) -> None:
    store = await _setup(tmp_path, writer_on_loop=writer_on_loop)
    before = store.commits
    results = await asyncio.gather(
        *(
            store.deliver(
                [NewMessage(A, "INBOX", prefix=f"X-N: {i}\r\n".encode())],
                f"Subject: {i}\r\n\r\n{i}\r\n".encode(),
                b"",
                internal_date=i,
            )
            for i in range(200)
        )
    )
    commits = store.commits - before
    assert 1 <= commits < 200  # grouped: fewer fsyncs than deliveries
    uids = sorted(r[0].uid for r in results)
    assert uids == list(range(1, 201))
    mb = store.get_mailbox(A, "INBOX")
    assert mb.messages == 200 and mb.uidnext == 201
    await store.close()

    again = await Store.open(tmp_path)
    try:
        mb = again.get_mailbox(A, "INBOX")
        listed = again.list_messages(mb.id)
        assert len(listed) == 200
        assert {m.prefix for m in listed} == {f"X-N: {i}\r\n".encode() for i in range(200)}
        assert sorted(m.modseq for m in listed) == sorted({m.modseq for m in listed})
    finally:
        await again.close()


async def test_on_loop_writer_rolls_back_a_failing_request_alone_and_close_drains(
    tmp_path: Path,
) -> None:
    """The supervisor's mode (``writer_on_loop``): one round takes every request
    queued since the last, a request that raises is rolled back alone, and
    ``close`` waits for the requests still queued."""
    store = await _setup(tmp_path, writer_on_loop=True)

    def deliver(i: int, mailbox: str = "INBOX") -> Any:
        return store.deliver([NewMessage(A, mailbox)], f"Subject: {i}\r\n\r\n".encode(), b"",
                             internal_date=i)

    before = store.commits
    results = await asyncio.gather(deliver(1), deliver(2, "Nowhere"), deliver(3),
                                   return_exceptions=True)
    assert store.commits - before == 1  # all three in one round
    assert isinstance(results[1], MailboxNotFound)
    assert [r[0].uid for r in (results[0], results[2])] == [1, 2]  # type: ignore[index]
    pending = [asyncio.ensure_future(deliver(i)) for i in range(4, 8)]
    await asyncio.sleep(0)  # queued, their round not run yet
    await store.close()
    assert all(f.done() and not f.exception() for f in pending)
    again = await Store.open(tmp_path)
    try:
        assert again.get_mailbox(A, "INBOX").messages == 6
    finally:
        await again.close()


async def test_reopen_keeps_everything(tmp_path: Path) -> None:
    store = await _setup(tmp_path)
    await store.add_alias("@example.org", A)
    await store.create_mailbox(A, "Projects/X")
    rec, _ = await store.append(A, "Projects/X", b"Subject: p\r\n\r\np\r\n", b"facts",
                             flags=frozenset({"\\Flagged"}), internal_date=7, tz_offset=90)
    boxes = store.list_mailboxes(A)
    account = store.get_account(A)
    await store.close()
    with pytest.raises(MailserverError):
        store.list_mailboxes(A)  # closed

    again = await Store.open(tmp_path)
    try:
        assert again.list_mailboxes(A) == boxes
        assert again.get_account(A) == account
        assert again.recipient_account("anyone@example.org") == A
        (got,) = again.list_messages(rec.mailbox_id)
        assert got == rec
        assert again.get_facts(rec.blob_id) == b"facts"
        # Counters continue: a new mailbox gets a fresh id and UIDVALIDITY.
        mb = await again.create_mailbox(A, "New")
        assert mb.id > max(b.id for b in boxes)
        assert mb.uidvalidity > max(b.uidvalidity for b in boxes)
    finally:
        await again.close()


async def test_schema_version_is_checked(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    await store.close()
    env, dbs = open_env(tmp_path / "store", 1 << 24)
    with env.begin(write=True) as txn:
        txn.put(keys.SCHEMA_VERSION_KEY, keys.U32.pack(999), db=dbs.meta)
    env.close()
    with pytest.raises(MailserverError, match="schema version 999"):
        await Store.open(tmp_path)


def test_usable_from_asyncio_run_and_uvloop(tmp_path: Path) -> None:
    async def admin() -> None:  # what the CLI does
        s = await _setup(tmp_path)
        await s.close()

    asyncio.run(admin())

    async def use() -> int:
        s = await Store.open(tmp_path)
        try:
            mb = s.get_mailbox(A, "INBOX")
            waiter = asyncio.ensure_future(s.wait_for_change(mb.id, mb.highestmodseq))
            await s.append(A, "INBOX", b"x", b"", internal_date=1)
            await asyncio.wait_for(waiter, 30)
            return s.get_mailbox(A, "INBOX").messages
        finally:
            await s.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(use()) == 1


_CRASH_CHILD = """
import asyncio, sys
from pathlib import Path
from mailserver.store.store import Store
from mailserver.store.model import NewMessage

async def main():
    s = await Store.open(Path(sys.argv[1]))
    await s.add_domain("example.org")
    await s.add_account("alice@example.org", "h")
    recs = await s.deliver([NewMessage("alice@example.org", "INBOX")],
                           b"Subject: survive\\r\\n\\r\\nkill -9\\r\\n", b"F", internal_date=5)
    print(recs[0].uid, recs[0].mailbox_id, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


async def test_delivery_survives_sigkill(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASH_CHILD, str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        uid, mbid = map(int, line.split())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    store = await Store.open(tmp_path)
    try:
        (rec,) = store.get_messages(mbid, [uid])
        assert store.get_blob(rec.blob_id) == b"Subject: survive\r\n\r\nkill -9\r\n"
        assert store.get_facts(rec.blob_id) == b"F"
        # The dead process's feed socket is cleaned up on the next commit.
        await store.append(A, "INBOX", b"after", b"", internal_date=6)
        left = [p for p in (tmp_path / "run").iterdir() if p.name.startswith(f"{proc.pid}-")]
        assert left == []
    finally:
        await store.close()


_APPENDER_CHILD = """
import asyncio, sys
from pathlib import Path
from mailserver.store.store import Store

async def main():
    s = await Store.open(Path(sys.argv[1]))
    try:
        await asyncio.gather(*(
            s.append("alice@example.org", "INBOX", b"child %d" % i, b"", internal_date=1)
            for i in range(int(sys.argv[2]))
        ))
        await s.create_mailbox("alice@example.org", "FromChild")
    finally:
        await s.close()

asyncio.run(main())
"""


async def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    store = await _setup(tmp_path)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _APPENDER_CHILD, str(tmp_path), "60",
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        mine = await asyncio.gather(
            *(store.append(A, "INBOX", b"parent %d" % i, b"", internal_date=1) for i in range(60))
        )
        await store.create_mailbox(A, "FromParent")
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        mb = store.get_mailbox(A, "INBOX")
        listed = store.list_messages(mb.id)
        assert len(listed) == 120 and mb.messages == 120 and mb.uidnext == 121
        assert [m.uid for m in listed] == list(range(1, 121))
        assert len({m.modseq for m in listed}) == 120
        assert {r.uid for r, _ in mine} <= {m.uid for m in listed}
        assert store.get_account(A).used == sum(m.size for m in listed)
        boxes = store.list_mailboxes(A)
        assert len({b.id for b in boxes}) == len(boxes)
        assert len({b.uidvalidity for b in boxes}) == len(boxes)
    finally:
        await store.close()
