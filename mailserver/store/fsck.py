"""Consistency check of a store or a backup of one (``mailserver verify``).

Everything is read in one read transaction, so a store the daemon is
writing to is checked as one consistent snapshot.  What must hold (the
invariants the write requests of ``messages.py``/``queue.py`` keep):

* every blob's reference count (``blobrefs``) equals the message records
  plus queue records naming it; every referenced blob exists, in ``blobs``
  and ``blobrefs``, and hashes (SHA-256) to its key: blobs are
  content-addressed (``base.content_address``);
* every message's UID is below its mailbox's UIDNEXT and its MODSEQ at or
  below the mailbox's HIGHESTMODSEQ (RFC 3501 §2.3.1.1, RFC 7162 §3.1);
  its MODSEQ index entry exists; a mailbox's message count and size equal
  the sum over its records;
* every mailbox belongs to an account and has its name entry, and every
  name entry names that mailbox;
* every queue record decodes (the caller's decoder: the store does not
  read queue records) and has its one schedule entry;
* no orphan: no record, index entry, schedule entry or blob without the
  thing it belongs to.

Memory: one counter per distinct blob and one per mailbox (not per message);
blobs are hashed one at a time, read through the memory map.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailserver.errors import MailserverError
from mailserver.store import codec, keys, reader
from mailserver.store.kv import Dbs, open_env_readonly

#: Findings kept for the report; more are counted, not listed.
MAX_LISTED = 1000


@dataclass(frozen=True, slots=True)
class Finding:
    """One inconsistency: ``kind`` (a stable snake_case name, e.g.
    ``blob_refcount``) and a human-readable ``detail``."""

    kind: str
    detail: str


@dataclass(slots=True)
class FsckReport:
    """What ``check`` found: ``counts`` of what it walked (``mailboxes``,
    ``messages``, ``blobs``, ``queued``, ...), the first ``MAX_LISTED``
    ``findings`` and their ``total`` count.  ``ok`` when there are none."""

    counts: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    total: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return self.total == 0

    def add(self, kind: str, detail: str) -> None:
        """Record a finding (listed while fewer than ``MAX_LISTED``)."""
        self.total += 1
        if len(self.findings) < MAX_LISTED:
            self.findings.append(Finding(kind, detail))


QueueDecoder = Callable[[bytes], object]


def check_path(store_dir: Path, decode_queue: QueueDecoder) -> FsckReport:
    """Check the environment in ``store_dir`` (``data_dir/store`` or a
    backup's ``store``), opened read-only.  Blocking: run it in a thread.
    Not in a process that has that store open already (LMDB forbids two
    opens in one process): ``Store.check`` is for those.

    ``decode_queue`` decodes a queue record and raises on a bad one.
    Raises StoreNotFound or MailserverError when it cannot be opened at all.
    """
    try:
        env, dbs = open_env_readonly(store_dir)
    except MailserverError:
        raise
    except Exception as exc:  # lmdb.Error: a file LMDB cannot read
        report = FsckReport()
        report.add("store_unreadable", f"{store_dir}: {exc}")
        return report
    try:
        with env.begin(buffers=True) as txn:
            return check_txn(txn, dbs, decode_queue)
    except Exception as exc:  # lmdb.CorruptedError and kin, met half-way
        report = FsckReport()
        report.add("store_unreadable", f"{store_dir}: {exc}")
        return report
    finally:
        env.close()


def check_txn(txn: Any, dbs: Dbs, decode_queue: QueueDecoder) -> FsckReport:
    """Check the snapshot of read transaction ``txn`` (see the module docstring)."""
    report = FsckReport()
    refs: Counter[bytes] = Counter()
    mailboxes = _check_mailboxes(txn, dbs, report)
    _check_messages(txn, dbs, mailboxes, refs, report)
    _check_modseq_index(txn, dbs, report)
    _check_queue(txn, dbs, refs, decode_queue, report)
    _check_blobs(txn, dbs, refs, report)
    return report


def _check_mailboxes(txn: Any, dbs: Dbs, report: FsckReport) -> dict[int, Any]:
    boxes: dict[int, Any] = {}
    for k, v in txn.cursor(db=dbs.mailboxes):
        try:
            mbid = keys.U64.unpack(bytes(k))[0]
            boxes[mbid] = codec.decode_mailbox(mbid, v)
        except Exception as exc:
            report.add("mailbox_record", f"mailbox key {bytes(k).hex()}: undecodable ({exc})")
    report.counts["mailboxes"] = len(boxes)
    for mbid, mb in boxes.items():
        if txn.get(mb.account.encode(), db=dbs.accounts) is None:
            report.add("orphan_mailbox", f"mailbox {mbid} {mb.name!r}: no account {mb.account}")
        named = txn.get(keys.mbname_key(mb.account, mb.name), db=dbs.mbnames)
        if named is None or bytes(named) != keys.mailbox_key(mbid):
            report.add("mailbox_name", f"mailbox {mbid} {mb.account} {mb.name!r}: "
                       "no name entry naming it")
    for k, v in txn.cursor(db=dbs.mbnames):
        mbid = keys.U64.unpack(bytes(v))[0] if len(v) == 8 else -1
        if mbid not in boxes:
            report.add("orphan_name", f"name entry {bytes(k)!r}: no mailbox {mbid}")
    return boxes


def _check_messages(txn: Any, dbs: Dbs, boxes: dict[int, Any], refs: Counter[bytes],
                    report: FsckReport) -> None:
    seen: dict[int, list[int]] = {}  # mailbox id: [messages, size, unseen, deleted, octets]
    n = 0
    for k, v in txn.cursor(db=dbs.messages):
        n += 1
        try:
            mbid, uid = keys.unpack_message_key(bytes(k))
            rec = codec.decode_message(mbid, uid, bytes(v))
        except Exception as exc:
            report.add("message_record", f"message key {bytes(k).hex()}: undecodable ({exc})")
            continue
        where = f"mailbox {mbid} uid {uid}"
        refs[rec.blob_id] += 1
        mb = boxes.get(mbid)
        if mb is None:
            report.add("orphan_message", f"{where}: no such mailbox")
            continue
        tally = seen.setdefault(mbid, [0, 0, 0, 0, 0])
        tally[0] += 1
        tally[1] += rec.size
        if "\\Seen" not in rec.flags:
            tally[2] += 1
        if "\\Deleted" in rec.flags:
            tally[3] += 1
            tally[4] += rec.size
        if uid >= mb.uidnext:
            report.add("uid_above_uidnext", f"{where}: UIDNEXT is {mb.uidnext}")
        if rec.modseq > mb.highestmodseq:
            report.add("modseq_above_highest",
                       f"{where}: MODSEQ {rec.modseq} > HIGHESTMODSEQ {mb.highestmodseq}")
        if txn.get(keys.modseq_key(mbid, rec.modseq, uid), db=dbs.modseq) is None:
            report.add("modseq_index", f"{where}: no index entry for MODSEQ {rec.modseq}")
        if txn.get(rec.blob_id, db=dbs.blobs) is None:
            report.add("missing_blob", f"{where}: blob {rec.blob_id.hex()} is missing")
    report.counts["messages"] = n
    for mbid, mb in boxes.items():
        count, size, *flagged = seen.get(mbid, (0, 0, 0, 0, 0))
        if (count, size) != (mb.messages, mb.size):
            report.add("mailbox_counts", f"mailbox {mbid} {mb.account} {mb.name!r}: record says "
                       f"{mb.messages} messages/{mb.size} octets, found {count}/{size}")
        kept = reader.stored_counts(txn, dbs, mbid)
        if kept is not None and list(kept) != flagged:
            report.add("mailbox_counts", f"mailbox {mbid} {mb.account} {mb.name!r}: kept "
                       f"unseen/deleted/octets {list(kept)}, found {flagged}")


def _check_modseq_index(txn: Any, dbs: Dbs, report: FsckReport) -> None:
    for k, _ in txn.cursor(db=dbs.modseq):
        try:
            mbid, modseq, uid = keys.unpack_modseq_key(bytes(k))
        except Exception:
            report.add("modseq_index", f"index key {bytes(k).hex()}: malformed")
            continue
        raw = txn.get(keys.message_key(mbid, uid), db=dbs.messages)
        if raw is None or codec.message_modseq(bytes(raw)) != modseq:
            report.add("orphan_modseq",
                       f"index entry mailbox {mbid} MODSEQ {modseq} uid {uid}: no such message")


def _check_queue(txn: Any, dbs: Dbs, refs: Counter[bytes], decode_queue: QueueDecoder,
                 report: FsckReport) -> None:
    n = 0
    for k, v in txn.cursor(db=dbs.queue):
        n += 1
        qid = bytes(k).decode("ascii", "replace")
        raw = bytes(v)
        if len(raw) < 40:
            report.add("queue_record", f"queued {qid}: record too short")
            continue
        next_ms, blob_id, record = keys.U64.unpack_from(raw)[0], raw[8:40], raw[40:]
        refs[blob_id] += 1
        try:
            decode_queue(record)
        except Exception as exc:
            report.add("queue_record", f"queued {qid}: undecodable ({type(exc).__name__})")
        if txn.get(keys.U64.pack(next_ms) + bytes(k), db=dbs.queuesched) is None:
            report.add("queue_schedule", f"queued {qid}: no schedule entry")
        if txn.get(blob_id, db=dbs.blobs) is None:
            report.add("missing_blob", f"queued {qid}: blob {blob_id.hex()} is missing")
    report.counts["queued"] = n
    for k, _ in txn.cursor(db=dbs.queuesched):
        key = bytes(k)
        raw = txn.get(key[8:], db=dbs.queue)
        if raw is None or bytes(raw[:8]) != key[:8]:
            report.add("orphan_schedule", f"schedule entry {key[8:].decode('ascii', 'replace')}: "
                       "no queued message at that time")


def _check_blobs(txn: Any, dbs: Dbs, refs: Counter[bytes], report: FsckReport) -> None:
    n = 0
    for k, v in txn.cursor(db=dbs.blobrefs):
        blob_id = bytes(k)
        try:
            count = codec.decode_blobref(v)[0]
        except Exception:
            report.add("blob_refcount", f"blob {blob_id.hex()}: undecodable reference record")
            continue
        if count != refs.get(blob_id, 0):
            report.add("blob_refcount", f"blob {blob_id.hex()}: count {count}, "
                       f"{refs.get(blob_id, 0)} references")
    for k, v in txn.cursor(db=dbs.blobs):
        n += 1
        blob_id = bytes(k)
        if hashlib.sha256(v).digest() != blob_id:
            report.add("blob_hash", f"blob {blob_id.hex()}: content does not hash to its key")
        if txn.get(blob_id, db=dbs.blobrefs) is None:
            report.add("orphan_blob", f"blob {blob_id.hex()}: no reference record")
        elif refs.get(blob_id, 0) == 0:
            report.add("orphan_blob", f"blob {blob_id.hex()}: referenced by nothing")
    report.counts["blobs"] = n
