"""The change feed across nodes: PostgreSQL LISTEN/NOTIFY (issue #17 §2).

The LMDB store's feed is a unix datagram per change between the processes
of one machine; with several nodes on one database, a write ``announce``s
its change inside its own transaction (``pg_notify``: PostgreSQL delivers it
to every listener when, and only if, the transaction commits, in commit
order), and every node's ``ChangeListener`` hands it to that node's IDLE
sessions and queue scheduler.  A payload is ``<kind>:<id>:<modseq>``, well
under NOTIFY's 8,000-octet limit.  Notifications are hints, not the data:
a listener that reconnects after losing its connection must treat every
mailbox as changed, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The NOTIFY channel.
CHANNEL = "mailserver_changes"


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change: ``kind`` ("mailbox" or "queue"), the mailbox id
    or 0, and the mailbox's new HIGHESTMODSEQ (0 for the queue)."""

    kind: str
    id: int
    modseq: int

    def payload(self) -> str:
        """The NOTIFY payload."""
        return f"{self.kind}:{self.id}:{self.modseq}"

    @classmethod
    def parse(cls, payload: str) -> Change | None:
        """The change of a payload, None when it is not one of ours."""
        parts = payload.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        return cls(parts[0], int(parts[1]), int(parts[2]))


async def announce(conn: Any, change: Change) -> None:
    """Announce ``change`` when the caller's transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, change.payload())


class ChangeListener:
    """Calls ``on_change(change)`` on the loop for every change any node commits,
    over a connection of its own (``start``/``stop``)."""

    def __init__(self, dsn: str, on_change: Callable[[Change], None]) -> None:
        self.dsn = dsn
        self.on_change = on_change
        self._conn: Any = None

    async def start(self) -> None:
        """Connect and LISTEN.  Raises asyncpg/OSError errors."""
        import asyncpg

        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.add_listener(CHANNEL, self._notified)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        change = Change.parse(payload)
        if change is not None:
            self.on_change(change)

    async def stop(self) -> None:
        """UNLISTEN and close."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.remove_listener(CHANNEL, self._notified)
            finally:
                await asyncio.shield(conn.close())


class MailboxWaiters:
    """A node's waiters on mailboxes (IDLE, ``PgMessages.wait_for_change``),
    woken by the change feed (``notice``, the ``ChangeListener`` callback).
    A waiter re-reads the mailbox after each wake-up: notifications are hints."""

    def __init__(self) -> None:
        self._waiting: dict[int, set[asyncio.Future[None]]] = {}

    def register(self, mailbox_id: int) -> asyncio.Future[None]:
        """A future set at the next change of ``mailbox_id`` (``unregister`` it after)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(mailbox_id, set()).add(fut)
        return fut

    def unregister(self, mailbox_id: int, fut: asyncio.Future[None]) -> None:
        """Forget ``fut`` (done or not)."""
        waiting = self._waiting.get(mailbox_id)
        if waiting is not None:
            waiting.discard(fut)
            if not waiting:
                del self._waiting[mailbox_id]

    def notice(self, change: Change) -> None:
        """Wake the waiters of a changed mailbox."""
        if change.kind != "mailbox":
            return
        for fut in self._waiting.get(change.id, ()):
            if not fut.done():
                fut.set_result(None)

    def wake_all(self) -> None:
        """Wake every waiter (the feed reconnected: changes may have been missed)."""
        for waiting in self._waiting.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_result(None)
