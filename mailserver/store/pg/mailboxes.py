"""Mailboxes of the PostgreSQL store (RFC 3501 §6.3.3-§6.3.7): the
``store.api.Mailboxes`` interface over schema v3, with the LMDB store's
rules (``store/mailboxes.py``):

* a mailbox id is never reused, and RENAME changes names only, so a session
  with a renamed mailbox selected keeps working;
* CREATE makes missing superior levels (unsubscribed); a name re-created
  gets a UIDVALIDITY above every one handed out before (``new_uidvalidity``,
  §2.3.1.1), and is subscribed again when a subscription outlived it;
* DELETE of a mailbox with inferiors expunges its messages (logged, for
  QRESYNC) and leaves it a ``noselect`` level (§6.3.4); without inferiors the
  mailbox goes, and its subscription stays as a gone one (§6.3.6, RFC 5258
  §3.1);
* RENAME moves the inferiors along; RENAME of INBOX moves its messages,
  UIDs kept, to a new mailbox and leaves INBOX empty (§6.3.5).

Every write holds the account's row lock first (``FOR UPDATE``), so two nodes
changing one account's hierarchy at once take turns; the writer commits and
syncs before the call returns.
"""

from __future__ import annotations

from typing import Any

from mailserver.errors import AccountNotFound, AlreadyExists, Cannot, InvalidName, MailboxNotFound
from mailserver.store.api import Mailboxes
from mailserver.store.model import DELIMITER, MailboxInfo
from mailserver.store.names import normalize_address, normalize_mailbox, parents
from mailserver.store.pg.blobs import PgBlobs
from mailserver.store.pg.changes import Change, announce
from mailserver.store.pg.messages import MAILBOX_SELECT, fetch_mailbox, mailbox_info
from mailserver.store.pg.writer import PgWriter
from mailserver.store.reader import MailboxCounts


def _children(name: str) -> str:
    """A LIKE pattern for the inferiors of ``name`` (its own wildcards escaped)."""
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + DELIMITER + "%"


class PgMailboxes:
    """``Mailboxes`` on PostgreSQL: ``writer`` commits, ``pool`` reads, ``blobs``
    releases the octets of removed messages."""

    def __init__(self, writer: PgWriter, pool: Any, blobs: PgBlobs | None = None) -> None:
        self._writer = writer
        self._pool = pool
        self._blobs = blobs or PgBlobs()

    # -- reads ----------------------------------------------------------------------

    async def list_mailboxes(self, account: str) -> list[MailboxInfo]:
        """See ``Mailboxes``."""
        try:
            account = normalize_address(account)
        except InvalidName:
            return []
        rows = await self._pool.fetch(MAILBOX_SELECT + " WHERE account = $1", account)
        return sorted((mailbox_info(r) for r in rows), key=lambda m: m.name)

    async def gone_subscriptions(self, account: str) -> list[str]:
        """See ``Mailboxes``."""
        try:
            account = normalize_address(account)
        except InvalidName:
            return []
        rows = await self._pool.fetch("SELECT name FROM gone_subscriptions WHERE account = $1",
                                      account)
        return sorted(r["name"] for r in rows)

    async def get_mailbox(self, account: str, name: str) -> MailboxInfo:
        """See ``Mailboxes``."""
        return await fetch_mailbox(self._pool, account, name)

    async def get_mailbox_by_id(self, mailbox_id: int) -> MailboxInfo:
        """See ``Mailboxes``."""
        row = await self._pool.fetchrow(MAILBOX_SELECT + " WHERE id = $1", mailbox_id)
        if row is None:
            raise MailboxNotFound(f"no mailbox {mailbox_id}")
        return mailbox_info(row)

    async def mailbox_counts(self, mailbox_id: int) -> MailboxCounts:
        """See ``Mailboxes``: the row's counters, and two index walks (the
        ``\\Deleted`` size and what lies above the ``\\Recent`` boundary)."""
        async with self._pool.acquire() as conn, \
                conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow("SELECT messages, unseen, deleted, recent_uid "
                                      "FROM mailboxes WHERE id = $1", mailbox_id)
            if row is None:
                return MailboxCounts(0, 0, 0, 0, 0)
            deleted_size = 0
            if row["deleted"]:
                deleted_size = int(await conn.fetchval(
                    "SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = $1 AND "
                    "'\\Deleted' = ANY (flags)", mailbox_id))
            recent = int(await conn.fetchval(
                "SELECT count(*) FROM messages WHERE mailbox_id = $1 AND uid > $2",
                mailbox_id, row["recent_uid"]))
        return MailboxCounts(int(row["messages"]), int(row["unseen"]), int(row["deleted"]),
                             deleted_size, recent)

    # -- writes -----------------------------------------------------------------------

    async def create_mailbox(self, account: str, name: str, *,
                             special_use: str | None = None) -> MailboxInfo:
        """See ``Mailboxes``."""
        account, name = normalize_address(account), normalize_mailbox(name)

        async def write(conn: Any) -> MailboxInfo:
            await _lock_account(conn, account)
            old = await conn.fetchrow(MAILBOX_SELECT + " WHERE account = $1 AND name = $2",
                                      account, name)
            if old is not None:
                if not old["noselect"]:
                    raise AlreadyExists(f"mailbox {name!r} already exists")
                await self._retire(conn, mailbox_info(old))
            await _ensure_parents(conn, account, name)
            subscribed = await conn.fetchval(
                "DELETE FROM gone_subscriptions WHERE account = $1 AND name = $2 RETURNING 1",
                account, name) is not None
            return await _new_mailbox(conn, account, name, special_use, subscribed)
        result: MailboxInfo = await self._writer.submit(write)
        return result

    async def delete_mailbox(self, account: str, name: str) -> None:
        """See ``Mailboxes``."""
        account, name = normalize_address(account), normalize_mailbox(name)
        if name == "INBOX":
            raise Cannot("INBOX cannot be deleted")
        doomed: list[bytes] = []

        async def write(conn: Any) -> None:
            await _lock_account(conn, account)
            row = await conn.fetchrow(MAILBOX_SELECT + " WHERE account = $1 AND name = $2 "
                                      "FOR UPDATE", account, name)
            if row is None:
                raise MailboxNotFound(f"no mailbox {name!r}")
            mb = mailbox_info(row)
            if await _has_children(conn, account, name):
                if mb.noselect:
                    raise Cannot(f"{name!r} has inferior mailboxes")
                doomed.extend(await self._expunge_all(conn, mb))
                await conn.execute("UPDATE mailboxes SET noselect = true, special_use = NULL "
                                   "WHERE id = $1", mb.id)
                return
            doomed.extend(await self._retire(conn, mb))
        await self._writer.submit(write)
        await self._blobs.forget(doomed)  # after the commit

    async def rename_mailbox(self, account: str, old: str, new: str) -> None:
        """See ``Mailboxes``."""
        account, old, new = normalize_address(account), normalize_mailbox(old), \
            normalize_mailbox(new)

        async def write(conn: Any) -> None:
            await _lock_account(conn, account)
            row = await conn.fetchrow(MAILBOX_SELECT + " WHERE account = $1 AND name = $2",
                                      account, old)
            if row is None:
                raise MailboxNotFound(f"no mailbox {old!r}")
            if await _exists(conn, account, new):
                raise AlreadyExists(f"mailbox {new!r} already exists")
            if old == "INBOX":
                await _rename_inbox(conn, mailbox_info(row), new)
                return
            if new.startswith(old + DELIMITER):
                raise Cannot("cannot rename a mailbox into its own hierarchy")
            moving = await conn.fetch(
                "SELECT id, name FROM mailboxes WHERE account = $1 AND "
                "(name = $2 OR name LIKE $3) ORDER BY name", account, old, _children(old))
            renamed = [(r["id"], new + r["name"][len(old):]) for r in moving]
            for _, target in renamed:
                if await _exists(conn, account, target):
                    raise AlreadyExists(f"mailbox {target!r} already exists")
            # No target is a name in use (checked above), so (account, name)
            # stays unique at every step.
            await conn.executemany("UPDATE mailboxes SET name = $2 WHERE id = $1", renamed)
            for mbid, _ in renamed:
                await announce(conn, Change("mailbox", mbid, 0))
            await _ensure_parents(conn, account, new)
        await self._writer.submit(write)

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        """See ``Mailboxes``."""
        account, name = normalize_address(account), normalize_mailbox(name)

        async def write(conn: Any) -> None:
            done = await conn.execute("UPDATE mailboxes SET subscribed = $3 "
                                      "WHERE account = $1 AND name = $2", account, name,
                                      subscribed)
            if done.endswith(" 1"):
                return
            if await conn.fetchval("SELECT 1 FROM accounts WHERE address = $1",
                                   account) is None:
                raise AccountNotFound(f"no account {account}")
            if not subscribed and await conn.fetchval(
                    "DELETE FROM gone_subscriptions WHERE account = $1 AND name = $2 "
                    "RETURNING 1", account, name):
                return
            raise MailboxNotFound(f"no mailbox {name!r}")
        await self._writer.submit(write)

    # -- helpers ------------------------------------------------------------------------

    async def _retire(self, conn: Any, mb: MailboxInfo) -> list[bytes]:
        """Remove the mailbox and its messages (their blob references go); a
        subscription outlives it.  Returns the objects to delete after the commit."""
        if mb.subscribed:
            await conn.execute("INSERT INTO gone_subscriptions VALUES ($1, $2) "
                               "ON CONFLICT DO NOTHING", mb.account, mb.name)
        blobs = await conn.fetch("DELETE FROM messages WHERE mailbox_id = $1 RETURNING blob_id",
                                 mb.id)
        doomed = []
        for r in blobs:
            doomed.extend(await self._blobs.release(conn, bytes(r["blob_id"])))
        await conn.execute("DELETE FROM mailboxes WHERE id = $1", mb.id)  # expunged: cascade
        await announce(conn, Change("mailbox", mb.id, 0))
        return doomed

    async def _expunge_all(self, conn: Any, mb: MailboxInfo) -> list[bytes]:
        """Every message of ``mb`` expunged at one new MODSEQ, logged for QRESYNC."""
        rows = await conn.fetch("DELETE FROM messages WHERE mailbox_id = $1 "
                                "RETURNING uid, blob_id", mb.id)
        if not rows:
            return []
        modseq = int(await conn.fetchval("SELECT next_modseq($1)", mb.id))
        await conn.executemany("INSERT INTO expunged VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                               [(mb.id, int(r["uid"]), modseq) for r in rows])
        await conn.execute("UPDATE mailboxes SET messages = 0, size = 0, unseen = 0, "
                           "deleted = 0 WHERE id = $1", mb.id)
        doomed = []
        for r in rows:
            doomed.extend(await self._blobs.release(conn, bytes(r["blob_id"])))
        await announce(conn, Change("mailbox", mb.id, modseq))
        return doomed


async def _lock_account(conn: Any, account: str) -> None:
    if await conn.fetchval("SELECT 1 FROM accounts WHERE address = $1 FOR UPDATE",
                           account) is None:
        raise AccountNotFound(f"no account {account}")


async def _exists(conn: Any, account: str, name: str) -> bool:
    return await conn.fetchval("SELECT 1 FROM mailboxes WHERE account = $1 AND name = $2",
                               account, name) is not None


async def _has_children(conn: Any, account: str, name: str) -> bool:
    return await conn.fetchval("SELECT 1 FROM mailboxes WHERE account = $1 AND name LIKE $2 "
                               "LIMIT 1", account, _children(name)) is not None


async def _new_mailbox(conn: Any, account: str, name: str, special_use: str | None,
                       subscribed: bool) -> MailboxInfo:
    row = await conn.fetchrow(
        "INSERT INTO mailboxes (account, name, uidvalidity, special_use, subscribed) "
        "VALUES ($1, $2, new_uidvalidity(), $3, $4) RETURNING id, account, name, uidvalidity, "
        "uidnext, highestmodseq, messages, size, subscribed, special_use, noselect",
        account, name, special_use, subscribed)
    await announce(conn, Change("mailbox", int(row["id"]), 1))
    return mailbox_info(row)


async def _ensure_parents(conn: Any, account: str, name: str) -> None:
    for parent in parents(name):
        if not await _exists(conn, account, parent):
            await _new_mailbox(conn, account, parent, None, False)


async def _rename_inbox(conn: Any, inbox: MailboxInfo, new: str) -> None:
    """RFC 3501 §6.3.5: INBOX's messages move, UIDs kept, to a new mailbox (a
    fresh UIDVALIDITY); INBOX stays (same id and UIDVALIDITY), empty, its
    removals logged at a new MODSEQ; INBOX's inferiors stay."""
    await _ensure_parents(conn, inbox.account, new)
    dest = await _new_mailbox(conn, inbox.account, new, None, inbox.subscribed)
    counts = await conn.fetchrow("SELECT uidnext, highestmodseq, messages, size, unseen, "
                                 "deleted FROM mailboxes WHERE id = $1 FOR UPDATE", inbox.id)
    moved = await conn.fetch("UPDATE messages SET mailbox_id = $2 WHERE mailbox_id = $1 "
                             "RETURNING uid", inbox.id, dest.id)
    await conn.execute(
        "UPDATE mailboxes SET uidnext = $2, highestmodseq = $3, messages = $4, size = $5, "
        "unseen = $6, deleted = $7 WHERE id = $1", dest.id, counts["uidnext"],
        counts["highestmodseq"], counts["messages"], counts["size"], counts["unseen"],
        counts["deleted"])
    if moved:
        modseq = int(await conn.fetchval("SELECT next_modseq($1)", inbox.id))
        await conn.executemany("INSERT INTO expunged VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                               [(inbox.id, int(r["uid"]), modseq) for r in moved])
        await conn.execute("UPDATE mailboxes SET messages = 0, size = 0, unseen = 0, "
                           "deleted = 0 WHERE id = $1", inbox.id)
        await announce(conn, Change("mailbox", inbox.id, modseq))


def as_mailboxes(m: PgMailboxes) -> Mailboxes:
    """``m`` as the protocol (mypy checks that it meets it)."""
    return m
