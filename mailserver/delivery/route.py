"""Routing an accepted submission: local recipients into the store, the rest to the queue.

Invariant: the SMTP 250 is sent only after *both* writes are durable (each
is its own fsynced LMDB commit).  They are two commits, not one, so the
order decides what a failure between them costs:

1. local delivery first.  It is the write that fails for the client's
   reasons (a mailbox over quota at DATA time); it is all-or-nothing, so
   failing here leaves nothing behind and the client's retry duplicates
   nothing.
2. then the queue.  ``enqueue`` fails only on server faults (disk or map
   full); then the client gets ``451 4.3.0`` and its retry gives the local
   recipients a second copy.  We accept that rare duplicate: the opposite
   order could send remote copies that can never be recalled (the scheduler
   starts delivering the moment ``enqueue`` commits), while a duplicate in a
   local INBOX is visible and harmless.  One commit for both would need a
   combined store operation (noted for the store owner).

DKIM signing happens at delivery time in the queue (``QueueManager``), not
here: the queued blob stays exactly what was accepted, and a key rotated
while a message waits for a retry is picked up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailserver.delivery.local import LocalRecipient, deliver_local
from mailserver.errors import AccountNotFound
from mailserver.store.store import Store

if TYPE_CHECKING:
    from mailserver.queue.manager import QueueManager


async def route_message(
    store: Store,
    queue: QueueManager | None,
    *,
    reverse_path: str,
    local: Sequence[LocalRecipient],
    remote: Sequence[str],
    blob: bytes,
    internal_date: int,
    tz_offset: int,
) -> str | None:
    """Deliver ``blob`` to ``local`` (one synced commit), then queue it for ``remote``.

    ``reverse_path`` "" is the null reverse-path.  Returns the outbound queue
    id, or None when there were no remote recipients.  Raises what
    ``deliver_local`` raises (nothing stored), or, from the queue, a server
    fault after the local copies are durable (see the module docstring).
    Raises ``RuntimeError`` for remote recipients without a queue.
    """
    if remote and queue is None:
        raise RuntimeError("remote recipients but no outbound queue")
    if local:
        await deliver_local(
            store, reverse_path=reverse_path, recipients=local, blob=blob,
            internal_date=internal_date, tz_offset=tz_offset,
        )
    if remote:
        assert queue is not None
        return await queue.enqueue(reverse_path, remote, blob)
    return None


async def deliver_report(store: Store, message: bytes, address: str, when: float) -> None:
    """Deliver a DSN the queue made (``message``) to the local ``address``'s INBOX.

    The queue's ``deliver_local`` callback.  The reverse-path of a DSN is
    null (RFC 3464 §2, RFC 5321 §4.5.5), hence ``Return-Path: <>``.  Raises
    ``AccountNotFound`` when the address no longer maps to an account, and
    whatever ``Store.deliver`` raises (e.g. ``QuotaExceeded``).
    """
    account = store.resolve_recipient(address)
    if account is None:
        raise AccountNotFound(f"no local account for {address}")
    await deliver_local(
        store, reverse_path="", recipients=[LocalRecipient(address, account)], blob=message,
        internal_date=int(when), tz_offset=0,
    )
