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

DSN extension (RFC 3461): the parameters go to the queue with the remote
recipients.  A local recipient whose NOTIFY includes SUCCESS gets its
"delivered" report (§6.2; RFC 3464 action "delivered") once the local
copies are durable, to the reverse-path (never to the null one): straight
into the store when the sender is local, else through the queue with the
null reverse-path.  The report cannot change the outcome: the message is
stored, so a failure to report is logged and the 250 still goes out
(a 4xx would make the client send a duplicate).

DKIM signing happens at delivery time in the queue (``QueueManager``), not
here: the queued blob stays exactly what was accepted, and a key rotated
while a message waits for a retry is picked up.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from mailserver.delivery.interface import (
    DeliveredReport,
    LocalRecipient,
    LocalStore,
    Outbound,
)
from mailserver.delivery.local import deliver_local

if TYPE_CHECKING:
    from mailserver.delivery.forward import Forwarder
    from mailserver.junk.filter import JunkFilter
from mailserver.errors import AccountNotFound, MailserverError
from mailserver.protocol.dsn_params import SUCCESS, DsnRequest, MailDsn, RcptDsn

log = structlog.get_logger("mailserver.delivery")


class RoutedDelivery:
    """``DeliveryTarget`` over the store and the outbound queue (see module doc).

    ``queue`` None: no remote recipients (the relay stage refuses them).
    ``make_report``: builds "delivered" DSNs (None: none are sent).
    ``reporting_mta``: our host name in those reports.
    """

    __slots__ = ("store", "queue", "make_report", "reporting_mta", "forwarder", "junk")

    def __init__(self, store: LocalStore, queue: Outbound | None, *,
                 make_report: DeliveredReport | None, reporting_mta: str,
                 forwarder: Forwarder | None = None, junk: JunkFilter | None = None) -> None:
        self.store = store
        self.queue = queue
        self.make_report = make_report
        self.reporting_mta = reporting_mta
        self.forwarder = forwarder  # an alias's remote copies (None: refused at commit)
        self.junk = junk  # scores local copies of mail from the MX (None: off)

    @property
    def outbound(self) -> bool:
        """``DeliveryTarget.outbound``: True when there is an outbound queue."""
        return self.queue is not None

    def begin(self, reverse_path: str, mail_dsn: MailDsn | None, *,
              requiretls: bool = False) -> _Routed:
        """``DeliveryTarget.begin``: a delivery collecting recipients until ``commit``."""
        return _Routed(self, reverse_path, mail_dsn, requiretls)


class _Routed:
    """One message: recipients collected in memory, written at ``commit`` only."""

    __slots__ = ("target", "reverse_path", "mail_dsn", "local", "remote", "rcpt_dsn",
                 "requiretls", "forwards")

    def __init__(self, target: RoutedDelivery, reverse_path: str, mail_dsn: MailDsn | None,
                 requiretls: bool = False) -> None:
        self.target = target
        self.requiretls = requiretls
        self.reverse_path = reverse_path
        self.mail_dsn = mail_dsn
        self.local: list[LocalRecipient] = []
        self.remote: list[str] = []
        self.rcpt_dsn: dict[str, RcptDsn] = {}
        self.forwards: dict[str, list[str]] = {}  # alias -> its remote targets

    def add_forward(self, forward_path: str, targets: Sequence[str]) -> None:
        self.forwards.setdefault(forward_path, []).extend(targets)

    def add_recipient(self, forward_path: str, account: str | None, dsn: RcptDsn | None) -> None:
        if account is None:
            self.remote.append(forward_path)
        else:
            self.local.append(LocalRecipient(forward_path, account))
        if dsn is not None:
            self.rcpt_dsn.setdefault(forward_path, dsn)

    async def commit(self, blob: bytes, *, queue_id: str, internal_date: int, tz_offset: int,
                     quarantine: bool = False, score_junk: bool = False) -> str | None:
        # queue_id: the message's one id (250 reply, Received:, the outbound
        # queue record, every log line); returned when remote recipients were
        # queued, else None.  quarantine: local copies go to Junk with
        # $Junk (``deliver_local``); remote ones are queued as they are.
        dsn = None
        if self.mail_dsn is not None or self.rcpt_dsn:
            dsn = DsnRequest(self.mail_dsn or MailDsn(), dict(self.rcpt_dsn))
        target = self.target
        queued = await route_message(
            target.store, target.queue, reverse_path=self.reverse_path, local=self.local,
            remote=self.remote, blob=blob, internal_date=internal_date, tz_offset=tz_offset,
            dsn=dsn, reporting_mta=target.reporting_mta, make_report=target.make_report,
            queue_id=queue_id, quarantine=quarantine, requiretls=self.requiretls,
            junk=target.junk if score_junk else None,
        )
        if self.forwards:
            # After the local copies and the queue, as a remote recipient's copy
            # (the module docstring's order); one copy per target, whichever
            # aliases lead there.
            if target.forwarder is None:
                raise RuntimeError("an alias forwards, but forwarding is not set up")
            sent: set[str] = set()
            for alias, targets in self.forwards.items():
                fresh = [t for t in dict.fromkeys(targets) if t.lower() not in sent]
                sent.update(t.lower() for t in fresh)
                if fresh:
                    await target.forwarder.forward(self.reverse_path, alias, fresh, blob)
        return queued

    def abort(self) -> None:
        self.local.clear()
        self.remote.clear()
        self.forwards.clear()


async def route_message(
    store: LocalStore,
    queue: Outbound | None,
    *,
    reverse_path: str,
    local: Sequence[LocalRecipient],
    remote: Sequence[str],
    blob: bytes,
    internal_date: int,
    tz_offset: int,
    dsn: DsnRequest | None = None,
    reporting_mta: str = "",
    queue_id: str | None = None,
    make_report: DeliveredReport | None = None,
    quarantine: bool = False,
    requiretls: bool = False,
    junk: JunkFilter | None = None,
) -> str | None:
    """Deliver ``blob`` to ``local`` (one synced commit), then queue it for ``remote``.

    ``reverse_path`` "" is the null reverse-path.  ``dsn``: the transaction's
    RFC 3461 parameters; ``reporting_mta`` names us in the reports it asks
    for (see the module docstring).  ``queue_id``: the message's id
    (``mailserver.protocol.queue_id``, already in its ``Received:`` field), kept by
    the queue (a fresh one when None).  Returns the outbound queue
    id, or None when there were no remote recipients.  Raises what
    ``deliver_local`` raises (nothing stored), or, from the queue, a server
    fault after the local copies are durable (see the module docstring).
    Raises ``RuntimeError`` for remote recipients without a queue.
    ``quarantine``: local copies go to each recipient's Junk mailbox.
    ``requiretls``: MAIL carried REQUIRETLS (RFC 8689 §4.1), kept by the queue.
    """
    if remote and queue is None:
        raise RuntimeError("remote recipients but no outbound queue")
    if local:
        await deliver_local(
            store, reverse_path=reverse_path, recipients=local, blob=blob,
            internal_date=internal_date, tz_offset=tz_offset, quarantine=quarantine,
            junk=junk,
        )
        if dsn is not None and reverse_path and make_report is not None:
            await _report_delivered(store, queue, reverse_path, local, blob, dsn,
                                    reporting_mta, internal_date, make_report,
                                    queue_id or "")
    if remote:
        assert queue is not None
        return await queue.enqueue(reverse_path, remote, blob, dsn=dsn, queue_id=queue_id,
                                   requiretls=requiretls)
    return None


async def _report_delivered(
    store: LocalStore, queue: Outbound | None, reverse_path: str,
    local: Sequence[LocalRecipient], blob: bytes, dsn: DsnRequest, reporting_mta: str,
    arrival: int, make_report: DeliveredReport, queue_id: str,
) -> None:
    """RFC 3461 §6.2: a "delivered" DSN for the local recipients that asked for one."""
    qlog = log.bind(queue_id=queue_id)  # the message's id, as on every line about it
    # One entry per forward-path: an alias reaching several accounts is one
    # recipient of the sender's (RFC 3464 §2.3).
    asked = list({r.forward_path: r for r in local
                  if dsn.rcpt(r.forward_path).wants(SUCCESS)}.values())
    if not asked:
        return
    try:
        report = make_report(
            reporting_mta=reporting_mta or "localhost",
            reverse_path=reverse_path,
            recipients=[(r.forward_path, dsn.rcpt(r.forward_path)) for r in asked],
            original=blob,
            arrival_date=arrival,
            queue_id=queue_id,
            envid=dsn.mail.envid,
        )
        if await store.recipient_account(reverse_path) is not None:
            await deliver_report(store, report, reverse_path, time.time())
        elif queue is not None:
            await queue.enqueue("", [reverse_path], report)
        else:
            qlog.warning("dsn_dropped", reason="no outbound queue", action="delivered")
            return
    except (MailserverError, ValueError) as exc:  # e.g. the sender's mailbox is full
        qlog.error("dsn_failed", action="delivered", error=str(exc))
        return
    except Exception:  # a bug: logged, but the message is stored and gets its 250
        qlog.exception("dsn_failed", action="delivered")
        return
    qlog.info("dsn_sent", action="delivered", rcpts=len(asked))


async def deliver_report(store: LocalStore, message: bytes, address: str, when: float) -> None:
    """Deliver a DSN the queue made (``message``) to the local ``address``'s INBOX.

    The queue's ``deliver_local`` callback.  The reverse-path of a DSN is
    null (RFC 3464 §2, RFC 5321 §4.5.5), hence ``Return-Path: <>``.  Raises
    ``AccountNotFound`` when the address no longer maps to an account, and
    whatever ``Store.deliver`` raises (e.g. ``QuotaExceeded``).
    """
    account = await store.recipient_account(address)
    if account is None:
        raise AccountNotFound(f"no local account for {address}")
    await deliver_local(
        store, reverse_path="", recipients=[LocalRecipient(address, account)], blob=message,
        internal_date=int(when), tz_offset=0,
    )
