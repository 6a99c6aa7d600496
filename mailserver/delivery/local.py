"""Local delivery: put an accepted message into each local recipient's INBOX.

Design (after maddy's delivery seam): the SMTP layer decides *who* gets the
message (policy at RCPT time) and builds the shared bytes; this module only
turns "these accounts get this blob" into one ``Store.deliver`` call.

Invariants:

* The blob (the Received field plus the bytes the client sent) is stored once
  for all recipients; the per-recipient trace fields (``Return-Path:``,
  ``Delivered-To:``) live in each record's ``prefix`` (RFC 5321 §4.4: the
  final delivery adds Return-Path).
* Nothing is written unless everything is: ``Store.deliver`` is one synced
  transaction, so when it returns the SMTP server may say 250, and when it
  raises no recipient has the message (no duplicates on the client's retry).
* One copy per account: two recipients that resolve to the same account
  (``alice@``, ``alice+tag@``, an alias) get one message, with the first
  forward-path in ``Delivered-To``, as Postfix's duplicate elimination does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from mailserver.protocol.mime import analyze
from mailserver.store.model import MessageRecord, NewMessage
from mailserver.store.store import Store

INBOX = "INBOX"


@dataclass(frozen=True, slots=True)
class LocalRecipient:
    """One accepted RCPT: the forward-path as the client gave it and the account it maps to."""

    forward_path: str
    account: str


def trace_prefix(reverse_path: str, forward_path: str) -> bytes:
    """The per-recipient fields: ``Return-Path: <rp>`` (RFC 5322 §3.6.7, RFC 5321 §4.4)
    and ``Delivered-To: fp`` (the Postfix/qmail convention, a loop-detection aid).

    ``reverse_path`` is "" for the null reverse-path, giving ``Return-Path: <>``.
    UTF-8 encoded (SMTPUTF8 addresses, RFC 6532).
    """
    return f"Return-Path: <{reverse_path}>\r\nDelivered-To: {forward_path}\r\n".encode(
        "utf-8", "surrogateescape"
    )


def unique_accounts(recipients: Sequence[LocalRecipient]) -> list[LocalRecipient]:
    """The recipients with later duplicates of an account dropped, order kept."""
    seen: set[str] = set()
    out: list[LocalRecipient] = []
    for rcpt in recipients:
        key = rcpt.account.lower()
        if key not in seen:
            seen.add(key)
            out.append(rcpt)
    return out


#: Messages analysed on the event loop (see ``cheap_to_analyze``): at most this
#: many octets, and the header section within the first ``INLINE_HEADER_MAX``.
INLINE_MAX = 16 * 1024
INLINE_HEADER_MAX = 2 * 1024


def message_facts(blob: bytes) -> bytes:
    """Serialized MIME facts of ``blob`` for ``Store.deliver`` (CPU-bound: call in a
    thread unless ``cheap_to_analyze``)."""
    return analyze(blob).to_bytes()


def cheap_to_analyze(blob: bytes) -> bool:
    """Whether the MIME analysis of ``blob`` is short enough to run on the event loop.

    A hop to a thread and back costs more than analysing a small single-part
    message (~0.2 ms for 4 KB; the hop was ~4 % of SMTP ingress CPU).  What
    makes the analysis slow is header fields (addresses above all: ~1.5 ms per
    KB) and MIME parts (~50 us each), not body octets; so: a small message,
    whose header section ends within ``INLINE_HEADER_MAX`` octets and which
    is neither multipart nor an encapsulated message (RFC 2046 §5), checked
    conservatively on those first octets.
    """
    if len(blob) > INLINE_MAX:
        return False
    head = blob[:INLINE_HEADER_MAX]
    if b"\n\r\n" not in head and b"\n\n" not in head:
        return False  # the header section goes on: maybe many fields
    lowered = head.lower()
    return b"multipart" not in lowered and b"message/" not in lowered


async def deliver_local(
    store: Store,
    *,
    reverse_path: str,
    recipients: Sequence[LocalRecipient],
    blob: bytes,
    internal_date: int,
    tz_offset: int,
) -> list[MessageRecord]:
    """Deliver ``blob`` to every recipient's INBOX in one synced store transaction.

    ``internal_date`` is POSIX seconds, ``tz_offset`` minutes east of UTC.
    Returns one record per distinct account, in recipient order.  Raises what
    ``Store.deliver`` raises (``QuotaExceeded``, ``MailboxNotFound``, server
    faults); then nothing was stored.
    """
    targets = [
        NewMessage(
            account=r.account, mailbox=INBOX, prefix=trace_prefix(reverse_path, r.forward_path)
        )
        for r in unique_accounts(recipients)
    ]
    # MIME parsing of a big message would stall every other connection: off the loop.
    if cheap_to_analyze(blob):
        facts = message_facts(blob)
    else:
        facts = await asyncio.to_thread(message_facts, blob)
    return await store.deliver(
        targets, blob, facts, internal_date=internal_date, tz_offset=tz_offset
    )
