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
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from mailserver.delivery.interface import LocalRecipient, LocalStore
from mailserver.errors import MailboxNotFound
from mailserver.metrics import instruments
from mailserver.protocol.mime.cost import (  # noqa: F401 (INLINE_*: importable here too)
    INLINE_HEADER_MAX,
    INLINE_MAX,
    cheap_to_analyze,
    message_facts,
)
from mailserver.store.model import MessageRecord, NewMessage

if TYPE_CHECKING:
    from mailserver.junk.filter import JunkFilter

log = structlog.get_logger("mailserver.delivery")

INBOX = "INBOX"
#: Where quarantined mail goes (a default mailbox of every account, special-use
#: ``\\Junk``, RFC 6154) and the keyword mail clients read as "junk" (RFC 5788).
JUNK = "Junk"
JUNK_KEYWORD = "$Junk"


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


async def deliver_local(
    store: LocalStore,
    *,
    reverse_path: str,
    recipients: Sequence[LocalRecipient],
    blob: bytes,
    internal_date: int,
    tz_offset: int,
    quarantine: bool = False,
    junk: JunkFilter | None = None,
) -> list[MessageRecord]:
    """Deliver ``blob`` to every recipient's INBOX in one synced store transaction.

    ``internal_date`` is POSIX seconds, ``tz_offset`` minutes east of UTC.
    ``quarantine``: into each recipient's Junk mailbox with the ``$Junk``
    keyword instead (a DMARC quarantine, RFC 7489 §6.3); an account whose
    Junk mailbox was deleted gets it in INBOX, still marked ``$Junk``.
    ``junk``: score the message for each account (``junk/filter.py``; once
    the model has learnt anything): its copy gets ``X-Spam-Status``/
    ``X-Spam-Score`` and, at or above the threshold, goes to that account's
    Junk with ``$Junk``.
    Returns one record per distinct account, in recipient order.  Raises what
    ``Store.deliver`` raises (``QuotaExceeded``, ``MailboxNotFound``, server
    faults); then nothing was stored.
    """
    mailbox, flags = (JUNK, frozenset({JUNK_KEYWORD})) if quarantine else (INBOX, frozenset())
    targets = [
        NewMessage(
            account=r.account, mailbox=mailbox, flags=flags,
            prefix=trace_prefix(reverse_path, r.forward_path),
        )
        for r in unique_accounts(recipients)
    ]
    if junk is not None and junk.trained():
        scored = []
        verdicts = await junk.verdicts([t.account for t in targets], blob)
        for t, v in zip(targets, verdicts, strict=True):
            junk.record(v)
            log.info("junk_scored", account=t.account, score=round(v.score.value, 3),
                     junk=v.junk, threshold=v.threshold, arm=v.arm,
                     features=[f for f, _ in v.score.top[:5]])
            if v.junk:
                t = dataclasses.replace(t, mailbox=JUNK, flags=t.flags | {JUNK_KEYWORD})
            scored.append(dataclasses.replace(t, prefix=t.prefix + v.fields()))
        targets = scored
    # MIME parsing of a big message would stall every other connection: off the loop.
    if cheap_to_analyze(blob):
        facts = message_facts(blob)
    else:
        facts = await asyncio.to_thread(message_facts, blob)
    try:
        records = await store.deliver(
            targets, blob, facts, internal_date=internal_date, tz_offset=tz_offset
        )
    except MailboxNotFound:
        if not any(t.mailbox == JUNK for t in targets):
            raise
        # Some recipient has no Junk mailbox: all-or-nothing, so all get INBOX + $Junk.
        targets = [dataclasses.replace(t, mailbox=INBOX) for t in targets]  # $Junk kept
        records = await store.deliver(
            targets, blob, facts, internal_date=internal_date, tz_offset=tz_offset
        )
    instruments().local_deliveries.inc(len(records))
    return records
