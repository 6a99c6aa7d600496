"""IDLE (RFC 2177): report mailbox changes as they happen, until ``DONE``.

Design notes
------------
Two things are awaited at once: the client's next line (``DONE``, RFC 2177
§3) and the store's change feed (``Messages.wait_for_change``, woken by every
commit of this process and of others: no polling).  Each wake-up folds the
changes into the view and sends them at once, EXPUNGE included (§3: IDLE is a
command in progress, so RFC 3501 §7.4.1 allows it).

The autologout timer (``limits.imap_idle_timeout``, RFC 3501 §5.4) runs from
the start of IDLE: RFC 2177 §3 asks clients to re-issue IDLE at least every
29 minutes.  When it fires the session ends with ``* BYE``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from mailserver.errors import ProtocolSyntaxError
from mailserver.imap.state import CloseConnection, State, TaggedOk
from mailserver.protocol.imap.response import continuation, untagged
from mailserver.protocol.imap.types import Command

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession


async def idle(session: ImapSession, cmd: Command) -> TaggedOk:
    """IDLE (RFC 2177 §3).  Anything but ``DONE`` ends it with BAD."""
    conn = session.conn
    session.write(continuation("idling"))
    loop = asyncio.get_running_loop()
    line_task: asyncio.Future[bytes | None] = asyncio.ensure_future(conn.read_line())
    change_task: asyncio.Task[None] | None = None
    conn.interruptible = True
    try:
        async with asyncio.timeout_at(loop.time() + session.limits.imap_idle_timeout):
            while True:
                await session.sync_view(allow_expunge=True)
                if session.state is State.LOGOUT:  # the mailbox was deleted
                    raise CloseConnection()
                view = session.selected
                await conn.flush()
                waiting: set[asyncio.Future[object]] = {line_task}  # type: ignore[arg-type]
                if view is not None:
                    change_task = asyncio.create_task(
                        session.messages.wait_for_change(view.mailbox_id, view.modseq))
                    waiting.add(change_task)  # type: ignore[arg-type]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if change_task is not None:
                    change_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await change_task
                    change_task = None
                if line_task.done():
                    break
    except TimeoutError:
        session.write(untagged("BYE Autologout; idle for too long"))
        raise CloseConnection() from None
    finally:
        conn.interruptible = False
        for task in (change_task, line_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    try:
        line = line_task.result()
    except TimeoutError:
        session.write(untagged("BYE Autologout; idle for too long"))
        raise CloseConnection() from None
    if line is None:
        raise CloseConnection()
    if line.strip().upper() != b"DONE":
        raise ProtocolSyntaxError("Expected DONE to end IDLE")
    return TaggedOk("IDLE terminated")
