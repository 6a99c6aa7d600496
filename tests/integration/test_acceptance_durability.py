"""Acceptance (issue #2 §3, §4): concurrent writers through the real server.

* 50 SMTP deliveries at once (threads, one connection each), every one
  acknowledged 250, are all in the store afterwards with distinct UIDs, and
  still there after a restart (same UIDs, same UIDVALIDITY).
* 5 IMAP sessions APPENDing at once get distinct APPENDUIDs (RFC 4315 §3)
  that match what the store holds.
* The group commit folds: the 50 deliveries take fewer synced LMDB
  transactions than messages (``Store.commits``).
"""

from __future__ import annotations

import imaplib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support.server import USERS, ServerThread, make_config
from support.wire import RawSmtp

ALICE = "alice@example.test"
N_SMTP = 50
N_IMAP_SESSIONS = 5
APPENDS_PER_SESSION = 10


def inbox_records(server: ServerThread, account: str = ALICE) -> list:
    mailbox = server.call(server.store.get_mailbox, account, "INBOX")
    return server.call(server.store.list_messages, mailbox.id)


def message_bytes(server: ServerThread, record) -> bytes:
    return record.prefix + server.call(server.store.get_blob, record.blob_id)


def deliver_concurrently(server: ServerThread, count: int) -> list[bytes]:
    """``count`` deliveries whose final dots are sent at the same moment;
    returns the 250 replies.  Each message has a unique subject."""
    port = server.port("smtp")
    ready = threading.Barrier(count, timeout=60)

    def one(i: int) -> bytes:
        s = RawSmtp.greeted(port, 60)
        try:
            assert s.cmd(b"EHLO load.remote.test")[-1].startswith(b"250 ")
            assert s.cmd(b"MAIL FROM:<load@remote.test>")[-1].startswith(b"250 ")
            assert s.cmd(b"RCPT TO:<alice@example.test>")[-1].startswith(b"250 ")
            assert s.cmd(b"DATA")[-1].startswith(b"354 ")
            s.sock.sendall(f"Subject: load {i}\r\n\r\nmessage number {i}\r\n".encode())
            ready.wait()  # every transaction is now waiting only for its dot
            return s.cmd(b".")[-1]
        finally:
            s.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_smtp_deliveries_are_all_durable_and_group_committed(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    server = ServerThread(config)
    try:
        for address, password in USERS.items():
            server.add_user(address, password)
        commits_before = server.call(lambda: server.store.commits)
        replies = deliver_concurrently(server, N_SMTP)
        commits = server.call(lambda: server.store.commits) - commits_before

        assert all(re.match(rb"250 2\.0\.0 .*[0-9A-Z]{17}", r) for r in replies), replies
        queue_ids = {r.split()[-1] for r in replies}
        assert len(queue_ids) == N_SMTP

        records = inbox_records(server)
        assert len(records) == N_SMTP
        uids = [r.uid for r in records]
        assert len(set(uids)) == N_SMTP and uids == sorted(uids)
        assert uids == list(range(1, N_SMTP + 1))  # UIDs are dense: no holes from races
        subjects = set()
        for record in records:
            m = re.search(rb"\r\nSubject: load (\d+)\r\n", message_bytes(server, record))
            assert m is not None
            subjects.add(int(m.group(1)))
        assert subjects == set(range(N_SMTP))
        mailbox = server.call(server.store.get_mailbox, ALICE, "INBOX")
        assert mailbox.uidnext == N_SMTP + 1

        # Group commit (issue #2 §3): the writer folds what queued during an fsync.
        assert 1 <= commits < N_SMTP, f"{commits} commits for {N_SMTP} concurrent messages"
        before = {(r.uid, r.blob_id) for r in records}
        uidvalidity = mailbox.uidvalidity
    finally:
        server.stop()

    # Restart on the same data dir: everything acknowledged is still there.
    again = ServerThread(config)
    try:
        records = inbox_records(again)
        assert {(r.uid, r.blob_id) for r in records} == before
        mailbox = again.call(again.store.get_mailbox, ALICE, "INBOX")
        assert mailbox.uidvalidity == uidvalidity
        assert mailbox.uidnext == N_SMTP + 1
    finally:
        again.stop()


def test_concurrent_imap_appends(server: ServerThread) -> None:
    port = server.port("imap")
    start = threading.Barrier(N_IMAP_SESSIONS, timeout=60)

    def session(n: int) -> list[tuple[int, int]]:
        """APPEND ten messages; return (APPENDUID uid, message number) pairs."""
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=60)
        try:
            assert imap.login(ALICE, USERS[ALICE])[0] == "OK"
            start.wait()
            out = []
            for k in range(APPENDS_PER_SESSION):
                number = n * APPENDS_PER_SESSION + k
                msg = f"Subject: append {number}\r\n\r\nbody {number}\r\n".encode()
                typ, data = imap.append("INBOX", None, None, msg)
                assert typ == "OK", data
                m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
                assert m is not None, data
                out.append((int(m.group(2)), number))
            return out
        finally:
            imap.logout()

    with ThreadPoolExecutor(max_workers=N_IMAP_SESSIONS) as pool:
        results = [pair for pairs in pool.map(session, range(N_IMAP_SESSIONS)) for pair in pairs]

    total = N_IMAP_SESSIONS * APPENDS_PER_SESSION
    uids = [uid for uid, _ in results]
    assert len(set(uids)) == total
    assert sorted(uids) == list(range(1, total + 1))
    by_uid = {r.uid: r for r in inbox_records(server)}
    assert sorted(by_uid) == sorted(uids)
    for uid, number in results:
        body = message_bytes(server, by_uid[uid])
        assert body == f"Subject: append {number}\r\n\r\nbody {number}\r\n".encode()

    # And a fresh session sees them all, in UID order.
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    try:
        imap.login(ALICE, USERS[ALICE])
        assert imap.select("INBOX") == ("OK", [str(total).encode()])
        typ, data = imap.uid("SEARCH", "ALL")
        assert typ == "OK" and [int(u) for u in data[0].split()] == list(range(1, total + 1))
    finally:
        imap.logout()
