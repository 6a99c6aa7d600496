"""``mailserver backup | verify | restore``: an online backup taken while SMTP
delivery goes on, restored into an empty directory and served again with the
same UIDVALIDITY, UIDs, bytes and flags; damage made on purpose is found."""

from __future__ import annotations

import asyncio
import imaplib
import json
import shutil
import smtplib
import threading
from pathlib import Path
from typing import Any

import lmdb
import pytest
from support.daemon import run_cli
from support.server import USERS, ServerThread, make_config, running_server
from support.wire import client_tls_context

from mailserver.admin import verify
from mailserver.store import codec, keys

ALICE = "alice@example.test"


def cli(tmp: Path, *args: str | Path) -> tuple[int, str, str]:
    result = run_cli(*args, cwd=tmp)  # cwd without conf/: the built-in configuration
    return result.returncode, result.stdout, result.stderr


def send(port: int, n: int, start: int = 0) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        for i in range(start, start + n):
            body = f"Subject: message {i}\r\nFrom: bob@example.test\r\n\r\nbody {i}\n.dot\r\n"
            s.sendmail("bob@example.test", [ALICE], body.encode())


def mailbox_state(srv: ServerThread, mailbox: str = "INBOX") -> tuple[int, dict[int, Any]]:
    """``(UIDVALIDITY, {uid: (flags, internaldate, bytes)})`` over IMAP."""
    c = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=client_tls_context())
    try:
        c.login(ALICE, USERS[ALICE])
        c.select(mailbox, readonly=True)
        uidvalidity = int(c.response("UIDVALIDITY")[1][0])
        typ, data = c.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        assert typ == "OK"
        out: dict[int, Any] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            head = item[0].decode()
            uid = int(head.split("UID ")[1].split()[0])
            flags = frozenset(f.decode() for f in imaplib.ParseFlags(item[0]))
            date = head.split('INTERNALDATE "')[1].split('"')[0]
            out[uid] = (flags, date, item[1])
        return uidvalidity, out
    finally:
        c.logout()


def set_flags(srv: ServerThread) -> None:
    c = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=client_tls_context())
    try:
        c.login(ALICE, USERS[ALICE])
        c.select("INBOX")
        c.uid("STORE", "1", "+FLAGS", r"(\Seen $Label1)")
        c.uid("STORE", "2", "+FLAGS", r"(\Flagged \Answered)")
        c.uid("STORE", "3", "+FLAGS", r"(\Deleted)")
        c.expunge()
        c.create("Archive")
        c.uid("COPY", "1:2", "Archive")
    finally:
        c.logout()


def test_backup_under_delivery_restore_serves_same_mail(server: ServerThread,
                                                        tmp_path: Path) -> None:
    port = server.port("smtp")
    send(port, 6)
    set_flags(server)
    # The junk model and an account's threshold are store records: they travel too.
    server.run(server.store.junk_train(ALICE, b"\x07" * 32, ["w:offer", "w:prize"], True))
    server.run(server.store.junk_set_threshold(ALICE, 0.7))
    stop = threading.Event()
    sent = [0]

    def deliver() -> None:  # one SMTP session after another during the backup
        while not stop.is_set():
            send(port, 2, 100 + sent[0])
            sent[0] += 2

    worker = threading.Thread(target=deliver)
    worker.start()
    try:
        data_dir = server.config.data_dir
        rc, out, err = cli(tmp_path, "backup", tmp_path / "bk", "--data-dir", data_dir)
    finally:
        stop.set()
        worker.join(60)
    assert rc == 0, err
    assert "written to" in out and " s\n" in out
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert "store/data.mdb" in paths and "data/tls/key.pem" in paths
    assert manifest["versions"]["store_schema"] == 1
    assert sent[0] > 0

    rc, out, err = cli(tmp_path, "verify", tmp_path / "bk")
    assert rc == 0, out + err
    assert "no damage found" in out

    restored = tmp_path / "restored"
    rc, out, err = cli(tmp_path, "restore", tmp_path / "bk", "--data-dir", restored)
    assert rc == 0, err
    with running_server(make_config(restored), users={}) as again:
        for mailbox in ("INBOX", "Archive"):
            uv_then, then = mailbox_state(server, mailbox)
            uv_now, now = mailbox_state(again, mailbox)
            assert uv_now == uv_then
            assert now, mailbox
            # The snapshot holds a prefix of what was delivered: every message
            # up to its last UID, each with the same bytes, flags and date.
            assert now == {uid: v for uid, v in then.items() if uid <= max(now)}
        _, inbox = mailbox_state(again)
        assert inbox[1][0] >= {"\\Seen", "$Label1"} and 3 not in inbox
        assert again.store.junk_totals(ALICE) == (1, 0)
        assert again.store.junk_threshold(ALICE) == 0.7
        assert inbox[2][0] >= {"\\Flagged", "\\Answered"}


def test_restore_and_backup_refuse(server: ServerThread, tmp_path: Path) -> None:
    data_dir = server.config.data_dir
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    rc, _, err = cli(tmp_path, "backup", tmp_path / "full", "--data-dir", data_dir)
    assert rc == 1 and "not empty" in err
    rc, _, err = cli(tmp_path, "backup", tmp_path / "bk", "--data-dir", tmp_path / "nothing")
    assert rc == 1 and "no store" in err and not (tmp_path / "nothing").exists()
    rc, _, err = cli(tmp_path, "backup", data_dir / "bk", "--data-dir", data_dir)
    assert rc == 1 and "inside the data directory" in err
    assert cli(tmp_path, "backup", tmp_path / "bk", "--data-dir", data_dir)[0] == 0
    rc, _, err = cli(tmp_path, "restore", tmp_path / "bk", "--data-dir", tmp_path / "full")
    assert rc == 1 and "not empty" in err
    with (tmp_path / "bk" / "store" / "data.mdb").open("r+b") as f:  # a flipped byte
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    rc, _, err = cli(tmp_path, "restore", tmp_path / "bk", "--data-dir", tmp_path / "new")
    assert rc == 1 and "damaged" in err and not (tmp_path / "new").exists()
    rc, out, _ = cli(tmp_path, "verify", tmp_path / "bk")
    assert rc == 1 and "SHA-256" in out


# -- damage found by verify ------------------------------------------------------------


@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped store with delivered, copied and queued mail."""
    tmp = tmp_path_factory.mktemp("fsck")
    with running_server(make_config(tmp / "data")) as srv:
        send(srv.port("smtp"), 3)
        set_flags(srv)
        with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
            s.starttls(context=client_tls_context())
            s.login(ALICE, USERS[ALICE])
            s.sendmail(ALICE, ["someone@remote.test"], b"Subject: out\r\n\r\nqueued\r\n")
    report = asyncio.run(verify(tmp / "data"))
    assert report.ok, report.store.findings
    assert report.store.counts["queued"] == 1 and report.store.counts["messages"] == 4
    return tmp / "data"


def damaged(good: Path, tmp: Path, damage: Any) -> Path:
    """A copy of ``good`` with ``damage(txn, dbs)`` written through LMDB directly."""
    copy = tmp / "copy"
    shutil.copytree(good, copy, ignore=shutil.ignore_patterns("run"))
    env = lmdb.open(str(copy / "store"), max_dbs=20, subdir=True)
    dbs = {n: env.open_db(n.encode()) for n in keys.DB_NAMES}
    with env.begin(write=True) as txn:
        damage(txn, dbs)
    env.close()
    return copy


def first(txn: Any, db: Any) -> tuple[bytes, bytes]:
    k, v = next(iter(txn.cursor(db=db)))
    return bytes(k), bytes(v)


def bump_refcount(txn: Any, dbs: dict[str, Any]) -> None:
    k, v = first(txn, dbs["blobrefs"])
    count, facts = codec.decode_blobref(v)
    txn.put(k, codec.encode_blobref(count + 1, facts), db=dbs["blobrefs"])


def drop_blob(txn: Any, dbs: dict[str, Any]) -> None:
    txn.delete(first(txn, dbs["blobs"])[0], db=dbs["blobs"])


def change_blob(txn: Any, dbs: dict[str, Any]) -> None:
    k, v = first(txn, dbs["blobs"])
    txn.put(k, v + b"x", db=dbs["blobs"])


def uid_too_high(txn: Any, dbs: dict[str, Any]) -> None:
    k, v = first(txn, dbs["messages"])
    mbid, uid = keys.unpack_message_key(k)
    txn.put(keys.message_key(mbid, 999_999), v, db=dbs["messages"])


def modseq_too_high(txn: Any, dbs: dict[str, Any]) -> None:
    k, v = first(txn, dbs["messages"])
    mbid, uid = keys.unpack_message_key(k)
    rec = codec.decode_message(mbid, uid, v)
    txn.put(k, codec.restamp_message(v, 10**9, rec.flags), db=dbs["messages"])


def bad_queue_record(txn: Any, dbs: dict[str, Any]) -> None:
    k, v = first(txn, dbs["queue"])
    txn.put(k, v[:40] + b"{not json", db=dbs["queue"])


def orphan_message(txn: Any, dbs: dict[str, Any]) -> None:
    k, v = first(txn, dbs["messages"])
    txn.put(keys.message_key(4242, 1), v, db=dbs["messages"])


@pytest.mark.parametrize(("damage", "kind"), [
    (bump_refcount, "blob_refcount"),
    (drop_blob, "missing_blob"),
    (change_blob, "blob_hash"),
    (uid_too_high, "uid_above_uidnext"),
    (modseq_too_high, "modseq_above_highest"),
    (bad_queue_record, "queue_record"),
    (orphan_message, "orphan_message"),
])
def test_verify_finds_damage(good_store: Path, tmp_path: Path, damage: Any, kind: str) -> None:
    copy = damaged(good_store, tmp_path, damage)
    report = asyncio.run(verify(copy))
    assert not report.ok
    assert kind in {f.kind for f in report.store.findings}, report.store.findings


def test_verify_cli_exit_status(good_store: Path, tmp_path: Path) -> None:
    rc, out, _ = cli(tmp_path, "verify", good_store)
    assert rc == 0 and "4 messages" in out
    copy = damaged(good_store, tmp_path, drop_blob)
    rc, out, err = cli(tmp_path, "verify", copy)
    assert rc == 1, err
    assert "missing_blob" in out and "problems found" in out


def test_open_store_checks_itself(good_store: Path, tmp_path: Path) -> None:
    """``Store.check``: the same checks inside a process that has the store open."""
    from support.daemon import on_store

    from mailserver.queue import model as queue_model

    copy = damaged(good_store, tmp_path, bump_refcount)

    async def check(store: Any) -> Any:
        return await asyncio.to_thread(store.check, queue_model.decode)

    report = on_store(copy, check)
    assert [f.kind for f in report.findings] == ["blob_refcount"]
