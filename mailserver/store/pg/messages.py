"""Mailboxes' messages in the PostgreSQL store (issue #17 §1, §2): the
``store.api.Messages`` interface over schema v1.

The same rules as the LMDB store (``store/messages.py``): APPEND gives the
next UID and a new MODSEQ; STORE changes only messages whose flags change,
each then at a new MODSEQ (RFC 7162 §3.1.3), system flags case-insensitive
and ``\\Recent`` never stored (``codec.normalize_flags``); EXPUNGE removes
``\\Deleted`` messages only, remembers their UIDs at the expunging MODSEQ
(QRESYNC, RFC 7162 §3.2.5) and drops their blob references.  UIDs and MODSEQs
come from the mailbox row under its lock (``allocate_uids``, ``next_modseq``),
and the mailbox's counters (messages, unseen, deleted, size) change in the
same transaction as the messages, which announces the change to every node
(``changes.announce``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from mailserver.errors import MailboxNotFound, NotFound, QuotaExceeded
from mailserver.store import codec
from mailserver.store.api import Messages
from mailserver.store.model import Changes, MailboxInfo, MessageRecord, NewMessage
from mailserver.store.names import normalize_address, normalize_mailbox
from mailserver.store.pg.blobs import BlobNotFound, PgBlobs
from mailserver.store.pg.changes import Change, MailboxWaiters, announce
from mailserver.store.pg.writer import PgWriter

_SEEN, _DELETED = "\\Seen", "\\Deleted"
#: Seconds between two looks at a mailbox by a waiter without a change feed.
POLL_SECONDS = 1.0
#: The columns of a ``MailboxInfo`` (``mailbox_info``).
MAILBOX_SELECT = ("SELECT id, account, name, uidvalidity, uidnext, highestmodseq, messages, "
                  "size, subscribed, special_use, noselect FROM mailboxes")
_RECORD = ("SELECT mailbox_id, uid, flags, extract(epoch FROM internal_date)::bigint AS date, "
           "tz_offset, size, modseq, blob_id, prefix FROM messages")


def mailbox_info(row: Any) -> MailboxInfo:
    """A ``MailboxInfo`` of a ``MAILBOX_SELECT`` row."""
    return MailboxInfo(int(row["id"]), row["account"], row["name"], int(row["uidvalidity"]),
                       int(row["uidnext"]), int(row["highestmodseq"]), int(row["messages"]),
                       int(row["size"]), bool(row["subscribed"]), row["special_use"],
                       bool(row["noselect"]))


def _record(row: Any) -> MessageRecord:
    return MessageRecord(int(row["mailbox_id"]), int(row["uid"]), frozenset(row["flags"]),
                         int(row["date"]), int(row["tz_offset"]), int(row["size"]),
                         int(row["modseq"]), bytes(row["blob_id"]), bytes(row["prefix"]))


async def fetch_mailbox(pool: Any, account: str, name: str) -> MailboxInfo:
    """The mailbox ``name`` of ``account`` (normalised, "inbox" is INBOX) read
    on ``pool`` (or a connection).  Raises MailboxNotFound, InvalidName."""
    row = await pool.fetchrow(MAILBOX_SELECT + " WHERE account = $1 AND name = $2",
                              normalize_address(account), normalize_mailbox(name))
    if row is None:
        raise MailboxNotFound(f"no mailbox {name!r}")
    return mailbox_info(row)


async def _lock_mailbox(conn: Any, mailbox_id: int) -> None:
    if await conn.fetchval("SELECT 1 FROM mailboxes WHERE id = $1 FOR UPDATE",
                           mailbox_id) is None:
        raise MailboxNotFound(f"no mailbox {mailbox_id}")


async def _check_quota(conn: Any, account: str) -> None:
    """Raise QuotaExceeded when ``account`` uses more than its quota now (in the
    caller's transaction, after its additions: the savepoint rolls them back)."""
    if await conn.fetchval(
            "SELECT 1 FROM accounts a WHERE a.address = $1 AND a.quota > 0 AND "
            "(SELECT sum(size) FROM mailboxes m WHERE m.account = a.address) > a.quota",
            account):
        raise QuotaExceeded(f"quota of {account} exceeded")


def _new_flags(mode: str, old: frozenset[str], flags: frozenset[str]) -> frozenset[str]:
    if mode == "set":
        return flags
    if mode == "add":
        return old | flags
    return old - flags


class PgMessages:
    """``Messages`` on PostgreSQL: ``writer`` commits, ``pool`` reads, ``blobs``
    holds the octets (inline or in an object store)."""

    def __init__(self, writer: PgWriter, pool: Any, blobs: PgBlobs | None = None,
                 waiters: MailboxWaiters | None = None) -> None:
        self._writer = writer
        self._pool = pool
        self._blobs = blobs or PgBlobs()
        #: Woken by the node's change feed (``PgNode``); without one,
        #: ``wait_for_change`` polls.
        self._waiters = waiters

    async def get_mailbox(self, account: str, name: str) -> MailboxInfo:
        """See ``Messages``."""
        return await fetch_mailbox(self._pool, account, name)

    async def append(self, account: str, mailbox: str, blob: bytes, facts: bytes, *,
                     flags: frozenset[str] = frozenset(), internal_date: int,
                     tz_offset: int = 0) -> MessageRecord:
        """See ``Messages``: a MULTIAPPEND of one (the quota and ``noselect``
        checks in one place)."""
        (record,) = await self.append_many(account, mailbox,
                                           [(blob, facts, flags, internal_date, tz_offset)])
        return record

    async def deliver(self, targets: Sequence[NewMessage], blob: bytes, facts: bytes, *,
                      internal_date: int, tz_offset: int = 0) -> list[MessageRecord]:
        """See ``Messages``: the blob is written once with a reference per
        target, every target's account is held to its quota after the whole
        request (as on LMDB), one transaction."""
        blob = bytes(blob)
        facts = bytes(facts)
        wanted = [(normalize_address(t.account), normalize_mailbox(t.mailbox), t) for t in targets]

        async def write(conn: Any) -> list[MessageRecord]:
            if not wanted:
                return []
            blob_id = await self._blobs.add(conn, blob, refs=len(wanted))
            out: list[MessageRecord] = []
            accounts: set[str] = set()
            for account, name, target in wanted:
                mbox = await conn.fetchval("SELECT id FROM mailboxes WHERE account = $1 AND "
                                           "name = $2 AND NOT noselect", account, name)
                if mbox is None:
                    raise MailboxNotFound(f"no mailbox {target.mailbox!r} of {account}")
                stored = codec.normalize_flags(target.flags)
                size = len(target.prefix) + len(blob)
                row = await conn.fetchrow("SELECT * FROM allocate_uids($1, 1)", mbox)
                uid, modseq = int(row["first_uid"]), int(row["modseq"])
                await conn.execute(
                    "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, flags, "
                    "internal_date, tz_offset, size, prefix, facts) VALUES ($1, $2, $3, $4, "
                    "$5, to_timestamp($6), $7, $8, $9, $10)", mbox, uid, modseq, blob_id,
                    sorted(stored), internal_date, tz_offset, size, bytes(target.prefix), facts)
                await conn.execute(
                    "UPDATE mailboxes SET messages = messages + 1, size = size + $2, "
                    "unseen = unseen + $3, deleted = deleted + $4 WHERE id = $1",
                    mbox, size, int(_SEEN not in stored), int(_DELETED in stored))
                await announce(conn, Change("mailbox", mbox, modseq))
                accounts.add(account)
                out.append(MessageRecord(mbox, uid, stored, internal_date, tz_offset, size,
                                         modseq, blob_id, bytes(target.prefix)))
            for account in sorted(accounts):  # the savepoint rolls back the whole request
                await _check_quota(conn, account)
            return out
        result: list[MessageRecord] = await self._writer.submit(write)
        return result

    async def append_many(self, account: str, mailbox: str,
                          entries: Sequence[tuple[bytes, bytes, frozenset[str], int, int]],
                          ) -> list[MessageRecord]:
        """See ``Messages``: one allocation of UIDs, one transaction."""
        account, name = normalize_address(account), normalize_mailbox(mailbox)
        items = [(bytes(blob), bytes(facts), codec.normalize_flags(flags), date, tz)
                 for blob, facts, flags, date, tz in entries]

        async def write(conn: Any) -> list[MessageRecord]:
            mbox = await conn.fetchval("SELECT id FROM mailboxes WHERE account = $1 AND "
                                       "name = $2 AND NOT noselect", account, name)
            if mbox is None:
                raise MailboxNotFound(f"no mailbox {mailbox!r}")
            if not items:
                return []
            row = await conn.fetchrow("SELECT * FROM allocate_uids($1, $2)", mbox, len(items))
            first, modseq = int(row["first_uid"]), int(row["modseq"])
            out = []
            for i, (blob, facts, flags, date, tz) in enumerate(items):
                blob_id = await self._blobs.add(conn, blob)
                await conn.execute(
                    "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, flags, "
                    "internal_date, tz_offset, size, facts) VALUES ($1, $2, $3, $4, $5, "
                    "to_timestamp($6), $7, $8, $9)", mbox, first + i, modseq, blob_id,
                    sorted(flags), date, tz, len(blob), facts)
                out.append(MessageRecord(mbox, first + i, flags, date, tz, len(blob), modseq,
                                         blob_id, b""))
            await conn.execute(
                "UPDATE mailboxes SET messages = messages + $2, size = size + $3, "
                "unseen = unseen + $4, deleted = deleted + $5 WHERE id = $1", mbox, len(out),
                sum(r.size for r in out), sum(_SEEN not in r.flags for r in out),
                sum(_DELETED in r.flags for r in out))
            await _check_quota(conn, account)
            await announce(conn, Change("mailbox", mbox, modseq))
            return out
        result: list[MessageRecord] = await self._writer.submit(write)
        return result

    async def recent_boundary(self, mailbox_id: int) -> int:
        """See ``Messages``."""
        value = await self._pool.fetchval("SELECT recent_uid FROM mailboxes WHERE id = $1",
                                          mailbox_id)
        return int(value or 0)

    async def claim_recent(self, mailbox_id: int, upto_uid: int) -> int:
        """See ``Messages``: under the mailbox row's lock, so every UID is
        recent for one session of one node only."""
        current = await self.recent_boundary(mailbox_id)
        if current >= upto_uid:
            return current

        async def write(conn: Any) -> int:
            old = await conn.fetchval("SELECT recent_uid FROM mailboxes WHERE id = $1 "
                                      "FOR UPDATE", mailbox_id)
            if old is None:
                raise MailboxNotFound(f"no mailbox {mailbox_id}")
            if upto_uid > old:
                await conn.execute("UPDATE mailboxes SET recent_uid = $2 WHERE id = $1",
                                   mailbox_id, upto_uid)
            return int(old)
        result: int = await self._writer.submit(write)
        return result

    async def wait_for_change(self, mailbox_id: int, modseq: int) -> None:
        """See ``Messages``: woken by the change feed, the mailbox re-read each time."""
        while True:
            fut = None if self._waiters is None else self._waiters.register(mailbox_id)
            try:
                top = await self._pool.fetchval(
                    "SELECT highestmodseq FROM mailboxes WHERE id = $1", mailbox_id)
                if top is None:
                    raise MailboxNotFound(f"no mailbox {mailbox_id}")
                if top > modseq:
                    return
                if fut is None:
                    await asyncio.sleep(POLL_SECONDS)
                else:
                    await fut
            finally:
                if fut is not None and self._waiters is not None:
                    self._waiters.unregister(mailbox_id, fut)

    async def list_messages(self, mailbox_id: int) -> list[MessageRecord]:
        """See ``Messages``."""
        rows = await self._pool.fetch(_RECORD + " WHERE mailbox_id = $1 ORDER BY uid",
                                      mailbox_id)
        return [_record(r) for r in rows]

    async def store_flags(self, mailbox_id: int, uids: Iterable[int], mode: str,
                          flags: frozenset[str]) -> list[MessageRecord]:
        """See ``Messages``."""
        if mode not in ("set", "add", "remove"):
            raise ValueError(f"bad STORE mode {mode!r}")
        wanted = sorted(set(uids))
        flags = codec.normalize_flags(flags)

        async def write(conn: Any) -> list[MessageRecord]:
            await _lock_mailbox(conn, mailbox_id)
            rows = await conn.fetch(_RECORD + " WHERE mailbox_id = $1 AND uid = ANY($2) "
                                    "ORDER BY uid", mailbox_id, wanted)
            changed = []
            for row in rows:
                old = frozenset(row["flags"])
                new = _new_flags(mode, old, flags)
                if new != old:
                    changed.append((_record(row), old, new))
            if not changed:
                return []
            modseq = int(await conn.fetchval("SELECT next_modseq($1)", mailbox_id))
            await conn.executemany(
                "UPDATE messages SET flags = $3, modseq = $4 WHERE mailbox_id = $1 AND uid = $2",
                [(mailbox_id, rec.uid, sorted(new), modseq) for rec, _, new in changed])
            unseen = sum((_SEEN not in new) - (_SEEN not in old) for _, old, new in changed)
            deleted = sum((_DELETED in new) - (_DELETED in old) for _, old, new in changed)
            await conn.execute("UPDATE mailboxes SET unseen = unseen + $2, "
                               "deleted = deleted + $3 WHERE id = $1", mailbox_id, unseen, deleted)
            await announce(conn, Change("mailbox", mailbox_id, modseq))
            return [MessageRecord(rec.mailbox_id, rec.uid, new, rec.internal_date,
                                  rec.tz_offset, rec.size, modseq, rec.blob_id, rec.prefix)
                    for rec, _, new in changed]
        result: list[MessageRecord] = await self._writer.submit(write)
        return result

    async def expunge(self, mailbox_id: int, uids: Iterable[int] | None = None) -> list[int]:
        """See ``Messages``."""
        only = None if uids is None else sorted(set(uids))
        doomed_objects: list[bytes] = []

        async def write(conn: Any) -> list[int]:
            await _lock_mailbox(conn, mailbox_id)
            rows = await conn.fetch(
                "SELECT uid, blob_id, size, flags FROM messages WHERE mailbox_id = $1 AND "
                "$2 = ANY (flags) AND ($3::bigint[] IS NULL OR uid = ANY($3)) ORDER BY uid",
                mailbox_id, _DELETED, only)
            if not rows:
                return []
            modseq = int(await conn.fetchval("SELECT next_modseq($1)", mailbox_id))
            gone = [int(r["uid"]) for r in rows]
            await conn.execute("DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2)",
                               mailbox_id, gone)
            await conn.executemany("INSERT INTO expunged VALUES ($1, $2, $3) "
                                   "ON CONFLICT DO NOTHING",
                                   [(mailbox_id, uid, modseq) for uid in gone])
            unseen = sum(_SEEN not in r["flags"] for r in rows)
            await conn.execute(
                "UPDATE mailboxes SET messages = messages - $2, size = size - $3, "
                "unseen = unseen - $4, deleted = deleted - $2 WHERE id = $1",
                mailbox_id, len(rows), sum(int(r["size"]) for r in rows), unseen)
            for r in rows:
                doomed_objects.extend(await self._blobs.release(conn, bytes(r["blob_id"])))
            await announce(conn, Change("mailbox", mailbox_id, modseq))
            return gone
        result: list[int] = await self._writer.submit(write)
        await self._blobs.forget(doomed_objects)  # after the commit
        return result

    async def transfer(self, mailbox_id: int, uids: Iterable[int], dest_account: str,
                       dest_mailbox: str, *, move: bool) -> tuple[int, list[tuple[int, int]]]:
        """See ``Messages``: the two mailbox rows locked in id order (two nodes
        moving between the same two mailboxes in opposite directions take
        turns instead of deadlocking)."""
        wanted = sorted(set(uids))
        account, name = normalize_address(dest_account), normalize_mailbox(dest_mailbox)

        async def write(conn: Any) -> tuple[int, list[tuple[int, int]]]:
            dest = await conn.fetchrow("SELECT id, uidvalidity, noselect FROM mailboxes "
                                       "WHERE account = $1 AND name = $2", account, name)
            if dest is None or dest["noselect"]:
                raise MailboxNotFound(f"no mailbox {dest_mailbox!r} to put messages in")
            dest_id = int(dest["id"])
            for mbid in sorted({mailbox_id, dest_id}):
                await _lock_mailbox(conn, mbid)
            rows = await conn.fetch(
                "SELECT uid, blob_id, flags, internal_date, tz_offset, size, prefix, facts "
                "FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid",
                mailbox_id, wanted)
            if not rows:
                return int(dest["uidvalidity"]), []
            alloc = await conn.fetchrow("SELECT * FROM allocate_uids($1, $2)", dest_id,
                                        len(rows))
            first, modseq = int(alloc["first_uid"]), int(alloc["modseq"])
            pairs = [(int(r["uid"]), first + i) for i, r in enumerate(rows)]
            await conn.executemany(
                "INSERT INTO messages (mailbox_id, uid, modseq, blob_id, flags, internal_date, "
                "tz_offset, size, prefix, facts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                "$10)", [(dest_id, new, modseq, r["blob_id"], r["flags"], r["internal_date"],
                          r["tz_offset"], r["size"], r["prefix"], r["facts"])
                         for (_, new), r in zip(pairs, rows, strict=True)])
            size = sum(int(r["size"]) for r in rows)
            unseen = sum(_SEEN not in r["flags"] for r in rows)
            deleted = sum(_DELETED in r["flags"] for r in rows)
            await conn.execute(
                "UPDATE mailboxes SET messages = messages + $2, size = size + $3, "
                "unseen = unseen + $4, deleted = deleted + $5 WHERE id = $1",
                dest_id, len(rows), size, unseen, deleted)
            await announce(conn, Change("mailbox", dest_id, modseq))
            if move:  # the blob references move with the messages
                gone = [old for old, _ in pairs]
                src_modseq = int(await conn.fetchval("SELECT next_modseq($1)", mailbox_id))
                await conn.execute("DELETE FROM messages WHERE mailbox_id = $1 AND "
                                   "uid = ANY($2)", mailbox_id, gone)
                await conn.executemany("INSERT INTO expunged VALUES ($1, $2, $3) "
                                       "ON CONFLICT DO NOTHING",
                                       [(mailbox_id, uid, src_modseq) for uid in gone])
                await conn.execute(
                    "UPDATE mailboxes SET messages = messages - $2, size = size - $3, "
                    "unseen = unseen - $4, deleted = deleted - $5 WHERE id = $1",
                    mailbox_id, len(rows), size, unseen, deleted)
                await announce(conn, Change("mailbox", mailbox_id, src_modseq))
            else:
                refs: dict[bytes, int] = {}
                for r in rows:
                    refs[bytes(r["blob_id"])] = refs.get(bytes(r["blob_id"]), 0) + 1
                await conn.executemany("UPDATE blobs SET refs = refs + $2 WHERE id = $1",
                                       list(refs.items()))
            if not move or mailbox_id != dest_id:
                await _check_quota(conn, account)
            return int(dest["uidvalidity"]), pairs
        result: tuple[int, list[tuple[int, int]]] = await self._writer.submit(write)
        return result

    async def changes_since(self, mailbox_id: int, modseq: int) -> Changes:
        """See ``Messages``: one snapshot (REPEATABLE READ), through the MODSEQ index."""
        async with self._pool.acquire() as conn, \
                conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow(MAILBOX_SELECT + " WHERE id = $1", mailbox_id)
            if row is None:
                raise MailboxNotFound(f"no mailbox {mailbox_id}")
            updated = await conn.fetch(_RECORD + " WHERE mailbox_id = $1 AND modseq > $2 "
                                       "ORDER BY uid", mailbox_id, modseq)
            expunged = await conn.fetch("SELECT uid FROM expunged WHERE mailbox_id = $1 AND "
                                        "modseq > $2 ORDER BY uid", mailbox_id, modseq)
        return Changes(mailbox_info(row), tuple(_record(r) for r in updated),
                       tuple(int(r["uid"]) for r in expunged))

    async def get_facts(self, blob_id: bytes) -> bytes:
        """See ``Messages``."""
        facts = await self._pool.fetchval("SELECT facts FROM messages WHERE blob_id = $1 "
                                          "LIMIT 1", blob_id)
        if facts is None:
            raise NotFound("message content no longer exists")
        return bytes(facts)

    async def get_blob(self, blob_id: bytes) -> bytes:
        """See ``Messages``."""
        async with self._pool.acquire() as conn:
            try:
                return await self._blobs.get(conn, blob_id)
            except BlobNotFound as exc:
                raise NotFound("message content no longer exists") from exc


def as_messages(m: PgMessages) -> Messages:
    """``m`` as the protocol (mypy checks that it meets it)."""
    return m
