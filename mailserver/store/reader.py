"""Read paths that many IMAP commands share, kept out of ``store.py``.

``Snapshot`` is one LMDB read transaction serving many reads: a SEARCH or
FETCH over hundreds of messages would otherwise open (and close) a read
transaction per message, which costs more than the read itself.  Every read
inside a snapshot sees the same committed state.

The scans here (``flag_list``, ``counts``) read only the fixed part of each
message record (``codec``): SELECT and STATUS on a big mailbox walk every
record, and building a ``MessageRecord`` each time was most of their cost.

Invariant: a snapshot is used by the thread that opened it and closed when the
command is done (a long-lived read transaction pins old pages: the file grows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailserver.errors import NotFound
from mailserver.store import codec, keys
from mailserver.store.kv import Dbs


class Snapshot:
    """One read transaction (opened with ``buffers=True``); ``with store.snapshot() as snap``.

    ``get_blob`` and ``get_facts`` mirror ``Store``'s (same errors), except
    that ``get_facts`` returns a zero-copy ``memoryview`` into the map, valid
    only until the snapshot is closed: facts are mostly sliced (a SEARCH reads
    a few hundred octets of them), so copying all of them was wasted.
    """

    __slots__ = ("_txn", "_dbs")

    def __init__(self, txn: Any, dbs: Dbs) -> None:
        self._txn = txn
        self._dbs = dbs

    def get_blob(self, blob_id: bytes) -> bytes:
        """The blob's bytes (a copy); NotFound when no message references it any more."""
        data = self._txn.get(blob_id, db=self._dbs.blobs)
        if data is None:
            raise NotFound("message content no longer exists")
        return bytes(data)

    def mailbox_modseq(self, mailbox_id: int) -> int | None:
        """The mailbox's HIGHESTMODSEQ, None when it is gone (``mailbox_modseq``)."""
        return mailbox_modseq(self._txn, self._dbs, mailbox_id)

    def get_facts(self, blob_id: bytes) -> memoryview:
        """The opaque facts stored with the blob, as a view; NotFound as ``get_blob``."""
        raw: memoryview | None = self._txn.get(blob_id, db=self._dbs.blobrefs)
        if raw is None:
            raise NotFound("message content no longer exists")
        return raw[8:]  # codec.encode_blobref: refcount (8 octets), then the facts


@dataclass(frozen=True, slots=True)
class MailboxCounts:
    """Counts STATUS asks for (RFC 3501 §6.3.10, RFC 9051 §6.3.11, RFC 9208 §4.4).

    ``unseen``: messages without ``\\Seen``; ``deleted``: with ``\\Deleted``;
    ``deleted_size``: their RFC822.SIZE summed, octets; ``recent``: UIDs above
    the ``\\Recent`` boundary (RFC 3501 §2.3.2).
    """

    messages: int
    unseen: int
    deleted: int
    deleted_size: int
    recent: int


def mailbox_modseq(txn: Any, dbs: Dbs, mailbox_id: int) -> int | None:
    """The mailbox's HIGHESTMODSEQ alone, None when the mailbox is gone.

    Every write bumps it (``messages.py``), so "unchanged since modseq m" is
    one read of a fixed field, without building a ``MailboxInfo``: the view
    sync and the record cache ask it after every command, and nearly always
    nothing changed."""
    raw = txn.get(keys.mailbox_key(mailbox_id), db=dbs.mailboxes)
    if raw is None:
        return None
    return codec.mailbox_highestmodseq(raw)


def flag_list(txn: Any, dbs: Dbs, mailbox_id: int) -> tuple[list[int], list[frozenset[str]]]:
    """``(uids, flags)`` of every message of the mailbox, ascending UID, as two
    parallel lists (SELECT's view).  Flag sets are interned by ``codec``."""
    prefix = keys.mailbox_prefix(mailbox_id)
    uids: list[int] = []
    flags: list[frozenset[str]] = []
    cur = txn.cursor(db=dbs.messages)
    if not cur.set_range(prefix):
        return uids, flags
    add_uid, add_flags = uids.append, flags.append
    uid_at = keys.U32.unpack_from
    flags_of = codec.decode_message_flags
    for k, v in cur.iternext():
        if k[:8] != prefix:
            break
        add_uid(uid_at(k, 8)[0])
        add_flags(flags_of(v))
    return uids, flags


def stored_counts(txn: Any, dbs: Dbs, mailbox_id: int) -> tuple[int, int, int] | None:
    """The mailbox's kept ``(unseen, deleted, deleted octets)`` (``keys.counts_key``),
    None when no write has stored them yet (a store from before they existed)."""
    raw = txn.get(keys.counts_key(mailbox_id), db=dbs.meta)
    return None if raw is None else codec.decode_counts(bytes(raw))


def walk_counts(txn: Any, dbs: Dbs, mailbox_id: int) -> tuple[int, int, int]:
    """``(unseen, deleted, deleted octets)`` by one walk over the fixed part of
    the mailbox's records: what ``stored_counts`` keeps, for a mailbox that
    has none yet and for ``fsck``."""
    prefix = keys.mailbox_prefix(mailbox_id)
    unseen = deleted = deleted_size = 0
    cur = txn.cursor(db=dbs.messages)
    if cur.set_range(prefix):
        bits_size = codec.message_bits_and_size
        seen_bit, deleted_bit = codec.SEEN_BIT, codec.DELETED_BIT
        for k, v in cur.iternext():
            if k[:8] != prefix:
                break
            bits, size = bits_size(v)
            if not bits & seen_bit:
                unseen += 1
            if bits & deleted_bit:
                deleted += 1
                deleted_size += size
    return unseen, deleted, deleted_size


def counts(txn: Any, dbs: Dbs, mailbox_id: int) -> MailboxCounts:
    """STATUS's counts from the mailbox record and its kept counters: no walk
    over the messages except the UIDs above the ``\\Recent`` boundary (few,
    once any session has selected the mailbox read-write).  A mailbox whose
    counters were never stored is walked once per call until its next write.
    An unknown id counts zeros."""
    raw_mb = txn.get(keys.mailbox_key(mailbox_id), db=dbs.mailboxes)
    if raw_mb is None:
        return MailboxCounts(0, 0, 0, 0, 0)
    messages = codec.decode_mailbox(mailbox_id, bytes(raw_mb)).messages
    kept = stored_counts(txn, dbs, mailbox_id)
    unseen, deleted, deleted_size = kept if kept is not None else walk_counts(txn, dbs, mailbox_id)
    raw = txn.get(keys.recent_key(mailbox_id), db=dbs.meta)
    boundary = keys.U32.unpack(raw)[0] if raw else 0
    return MailboxCounts(messages, unseen, deleted, deleted_size,
                         _above(txn, dbs, mailbox_id, boundary) if boundary else messages)


def _above(txn: Any, dbs: Dbs, mailbox_id: int, boundary: int) -> int:
    """How many messages of the mailbox have a UID above ``boundary`` (keys only)."""
    prefix = keys.mailbox_prefix(mailbox_id)
    cur = txn.cursor(db=dbs.messages)
    n = 0
    if boundary < 0xFFFFFFFF and cur.set_range(keys.message_key(mailbox_id, boundary + 1)):
        for k in cur.iternext(keys=True, values=False):
            if k[:8] != prefix:
                break
            n += 1
    return n
