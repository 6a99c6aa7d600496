"""The queue manager: enqueue, the scheduler, delivery rounds, bounces, admin.

Life of a message: ``enqueue`` stores it (record + schedule entry + blob
reference, one synced commit) and wakes the scheduler.  The scheduler takes
due ids off the schedule index, *first* moves each one's schedule entry to
the time of the next retry (the lease: if we die during the attempt, the
message is due again then — at-least-once), then runs one round per message:
recipients grouped by domain, one connection per group, groups in parallel
under a total and a per-domain connection limit.  The round's results update
the record; a message with no recipients left is removed after its DSN (if
any) is durable.

Invariant: at most one round per message runs in this process
(``_inflight``).  Several processes delivering one store is not supported.

A round that crashes (a bug: any exception escaping it) is logged with its
traceback (``queue_round_crashed``) and counted as a failed attempt with a
temporary "451 4.3.0" result for every recipient still to deliver, so the
backoff grows and the maximum age (measured from creation) still ends it
with a DSN.  Only a process that dies in every round (kill -9, out of
memory) retries at the lease time forever; the operator sees it in the log.

The scheduler itself never dies of an error: a pass that raises (the store
refusing the lease write, a bug) is logged with its traceback
(``queue_scheduler_error``) and the next pass waits a growing delay
(``ERROR_BACKOFF``), so a persistent fault neither kills delivery for good nor
spins.  A record that cannot be decoded (damaged, or written by a newer
version) is logged (``queue_record_unreadable``), skipped by this process and
rescheduled ``max_age`` later: the operator can inspect or delete it.

DSN extension (RFC 3461): a message keeps its MAIL's RET/ENVID and each
recipient its NOTIFY/ORCPT (``enqueue(dsn=...)``).  A next hop that offers
DSN gets them passed on (§5.2.1, in ``client``); reports follow NOTIFY: a
failure report only with FAILURE, a delay warning only with DELAY (both
the default when NOTIFY was not given), none for NEVER, and a "relayed"
report for SUCCESS when the next hop accepted but does not offer DSN
(§5.2.2; when it does, reporting success is its job).

Sessions that finished a transaction are kept in a ``ConnectionPool`` for
``settings.reuse_idle`` seconds, so a burst of messages to one destination
shares a connection; ``stop`` closes them.
"""

from __future__ import annotations

import asyncio
import builtins  # the class has a list() method: annotations inside it say builtins.list
import contextlib
import dataclasses
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from mailserver.dkim.keys import DkimKey
from mailserver.dkim.sign import from_domain, sign_async
from mailserver.dns.resolver import DnsPythonResolver, Resolver
from mailserver.errors import MailserverError, NotFound
from mailserver.protocol import dsn_params
from mailserver.protocol.dsn_params import DELAY, FAILURE, SUCCESS, DsnRequest, MailDsn
from mailserver.queue import dsn, model
from mailserver.queue.backoff import next_attempt, retry_delay
from mailserver.queue.client import (
    Outcome,
    RcptResult,
    deliver_domain,
    new_pool,
    valid_path,
)
from mailserver.queue.model import QueuedMessage, RcptStatus, Recipient
from mailserver.queue.settings import OutboundSettings
from mailserver.store.store import Store

log = structlog.get_logger("mailserver.queue")

#: Due messages taken off the index per scheduler pass.
BATCH = 500
#: Longest the scheduler sleeps without looking at the schedule index, seconds.
#: Other processes (workers, ``mailserver queue retry|flush``) wake us through
#: the store's change feed; this is the safety net should a wake-up datagram be
#: lost (the feed drops them for a peer whose socket buffer is full).
RESCAN = 30.0
#: Delays before the scheduler's next pass after 1, 2, ... failed passes in a
#: row (the last repeats), seconds.
ERROR_BACKOFF = (1.0, 2.0, 5.0, 10.0, RESCAN)

DeliverLocal = Callable[[bytes, str], Awaitable[None]]
KeysFor = Callable[[str], Sequence[DkimKey]]


class QueueManager:
    """Owns the outbound queue of one store.

    ``resolver``: DNS (default: dnspython at the configured nameserver).
    ``dkim_keys(domain)``: signing keys for a From domain ([] = do not sign).
    ``is_local(address)`` / ``deliver_local(message, address)``: where DSNs for
    local senders go (straight into the store); DSNs to remote senders are
    queued with the null reverse-path.  ``clock``: Unix seconds (tests).
    """

    def __init__(
        self,
        store: Store,
        settings: OutboundSettings,
        *,
        resolver: Resolver | None = None,
        dkim_keys: KeysFor | None = None,
        is_local: Callable[[str], bool] | None = None,
        deliver_local: DeliverLocal | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self.settings = settings
        self._resolver: Resolver = resolver or DnsPythonResolver(
            settings.resolver_address, settings.resolver_port, timeout=settings.dns_timeout
        )
        self._dkim_keys = dkim_keys
        self._is_local = is_local
        self._deliver_local = deliver_local
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._total = asyncio.Semaphore(settings.max_connections)
        self._per_domain: dict[str, asyncio.Semaphore] = {}
        self._pool = new_pool(settings)
        self._runner: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._stopping = False
        #: Ids of records that cannot be decoded: never leased by this process.
        self._unreadable: set[str] = set()
        #: Delivery rounds finished in this process (any outcome); see ``wait_rounds``.
        self.rounds = 0
        self._round_done = asyncio.Event()

    # -- public entry points -------------------------------------------------------

    async def enqueue(
        self, reverse_path: str, recipients: Sequence[str], message: bytes, *,
        dsn: DsnRequest | None = None,
    ) -> str:
        """Queue ``message`` for ``recipients``; durable (fsynced) when it returns.

        ``reverse_path`` "" is the null reverse-path (DSNs).  ``message`` is the
        exact bytes to send (CRLF lines, as received).  ``dsn``: the RFC 3461
        parameters given with MAIL and RCPT.  Returns the queue id.
        Raises ValueError for no recipients, an address without "@", or an
        address that cannot go on an SMTP command line (RFC 5321 §4.1.2: no
        spaces, angle brackets or control characters outside a quoted local part).
        """
        rcpts = list(dict.fromkeys(recipients))  # one entry per address, order kept
        if not rcpts:
            raise ValueError("no recipients")
        for r in rcpts:
            if "@" not in r or r.startswith("@") or r.endswith("@") or not valid_path(r):
                raise ValueError(f"not a mailbox address: {r!r}")
        if not valid_path(reverse_path):
            raise ValueError(f"not a reverse-path: {reverse_path!r}")
        message = bytes(message)
        # The same SHA-256 the store computes for its content-addressed blob.
        blob_id = await asyncio.to_thread(_sha256, message) if len(message) > 1 << 18 \
            else _sha256(message)
        now = self._clock()
        qid = model.new_queue_id(now)
        rec = QueuedMessage(
            id=qid, reverse_path=reverse_path, created=now, blob_id=blob_id,
            size=len(message), next_attempt=now,
            recipients=tuple(
                Recipient(r, dsn=None if dsn is None else dsn.rcpts.get(r)) for r in rcpts),
            dsn=None if dsn is None or dsn.mail == MailDsn() else dsn.mail,
        )
        await self._store.queue_add(qid, model.encode(rec), message, now)
        log.info("queued", queue_id=qid, recipients=len(rcpts), size=len(message))
        self._wake.set()
        return qid

    async def start(self) -> None:
        """Start the scheduler (resumes whatever the store holds)."""
        if self._runner is None:
            self._stopping = False
            self._runner = asyncio.create_task(self._run(), name="queue-scheduler")
            self._listener = asyncio.create_task(self._listen(), name="queue-listener")

    async def _listen(self) -> None:
        """Wake the scheduler when another process (a worker, the CLI's
        ``queue retry``/``flush``) queues or reschedules mail on our store."""
        with contextlib.suppress(MailserverError):
            while True:
                await self._store.wait_for_queue_change()
                self._wake.set()

    async def stop(self) -> None:
        """Stop scheduling and cancel rounds in flight (they are retried after restart:
        their next attempt time was saved before they began)."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._inflight.values())
        if self._runner is not None:
            tasks.append(self._runner)
        if self._listener is not None:
            tasks.append(self._listener)
            self._listener = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:  # already logged where it happened; stop() must still stop
                log.exception("queue_task_failed", task=t.get_name())
        self._runner = None
        await self._pool.close()
        self._pool = new_pool(self.settings)

    def list(self) -> list[QueuedMessage]:
        """Every queued message, oldest first; unreadable records are logged and left out."""
        found = (_decode_or_none(raw) for raw in self._store.queue_list())
        return [rec for rec in found if rec is not None]

    def show(self, queue_id: str) -> QueuedMessage | None:
        """The message, or None if there is none (or its record is unreadable, logged)."""
        raw = self._store.queue_get(queue_id)
        return None if raw is None else _decode_or_none(raw, queue_id)

    async def retry(self, queue_id: str) -> bool:
        """Make the message due now.  False if there is no such message."""
        found = await self._store.queue_reschedule([queue_id], self._clock())
        self._wake.set()
        return bool(found)

    async def flush(self) -> int:
        """Make every queued message due now; returns how many there are."""
        ids = [rec.id for rec in self.list()]
        found = await self._store.queue_reschedule(ids, self._clock()) if ids else []
        self._wake.set()
        return len(found)

    async def delete(self, queue_id: str) -> bool:
        """Drop the message without a DSN.  False if there is no such message."""
        task = self._inflight.get(queue_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        removed = await self._store.queue_remove(queue_id)
        if removed:
            log.info("queue_deleted", queue_id=queue_id)
        return removed

    async def wait_rounds(self, n: int) -> None:
        """Wait until ``rounds`` >= ``n`` (tests; the CLI's "flush and wait")."""
        while self.rounds < n:
            self._round_done.clear()
            await self._round_done.wait()

    async def wait_idle(self) -> None:
        """Wait until no round is in flight (for tests and shutdown)."""
        while self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    # -- scheduler -----------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._pass()
                failures = 0
            except Exception:  # cancellation (stop) passes through
                failures += 1
                delay = ERROR_BACKOFF[min(failures, len(ERROR_BACKOFF)) - 1]
                log.exception("queue_scheduler_error", failures=failures, retry_in=delay)
                # A plain wait, not the wake event: enqueues must not turn a
                # persistent fault (e.g. a full store) into a busy loop.
                await asyncio.sleep(delay)

    async def _pass(self) -> None:
        """Start the rounds of what is due, then wait until the next is due or a wake-up."""
        self._wake.clear()
        now = self._clock()
        due = [q for q in self._store.queue_due(now, BATCH)
               if q not in self._inflight and q not in self._unreadable]
        if due:
            await self._take(due, now)
        nxt = self._store.queue_next_due()
        if len(due) >= BATCH:
            return
        timeout = RESCAN if nxt is None else nxt - self._clock()
        if timeout <= 0:
            # Only in-flight messages are due: a finishing round wakes us
            # (or the change feed, for changes made by another process).
            timeout = RESCAN
        timeout = min(timeout, RESCAN)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _take(self, due: builtins.list[str], now: float) -> None:
        """Save each message's lease (next attempt) before starting its round.

        The rounds of the messages leased are started even when other leases
        failed; then the first failure is raised (the scheduler backs off).
        """
        leased: list[tuple[str, QueuedMessage]] = []

        async def lease(qid: str) -> None:
            raw = self._store.queue_get(qid)
            if raw is None:
                return
            rec = _decode_or_none(raw, qid)
            if rec is None:
                await self._set_aside(qid, now)
                return
            until = now + retry_delay(rec.attempts + 1, self.settings.backoff)
            rec = _replace(rec, next_attempt=until)
            try:
                await self._store.queue_put(qid, model.encode(rec), until)
            except NotFound:
                return
            leased.append((qid, rec))

        outcomes = await asyncio.gather(*(lease(q) for q in due), return_exceptions=True)
        for qid, rec in leased:
            task = asyncio.create_task(self._round(rec), name=f"queue-{qid}")
            self._inflight[qid] = task
            task.add_done_callback(lambda t, q=qid: self._done(q, t))  # type: ignore[misc]
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _set_aside(self, qid: str, now: float) -> None:
        """Skip an undecodable record from now on, and move it ``max_age`` later so
        that other processes (and this one after a restart) do not spin on it."""
        self._unreadable.add(qid)
        with contextlib.suppress(MailserverError):
            await self._store.queue_reschedule(
                [qid], now + self.settings.max_age, only_later=False
            )

    def _done(self, qid: str, task: asyncio.Task[None]) -> None:
        if self._inflight.get(qid) is task:
            del self._inflight[qid]
        if not task.cancelled():
            self.rounds += 1
            self._round_done.set()
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("queue_round_crashed", queue_id=qid, exc_info=exc)
        self._wake.set()

    # -- one delivery round ----------------------------------------------------------

    async def _round(self, rec: QueuedMessage) -> None:
        blog = log.bind(queue_id=rec.id)
        try:
            await self._attempt(rec, blog)
        except Exception:  # a bug; cancellation (stop, delete) passes through
            blog.exception("queue_round_crashed")
            await self._count_crash(rec, blog)

    async def _count_crash(self, rec: QueuedMessage, blog: Any) -> None:
        """Record a crashed round as a temporary failure of every active recipient:
        the attempt counts (backoff), and past the maximum age the message fails."""
        reply = "451 4.3.0 local error during delivery (see the server log)"
        results = {r.address: RcptResult(r.address, Outcome.TEMPORARY, reply)
                   for r in rec.active}
        try:
            try:
                blob = self._store.get_blob(rec.blob_id)
            except NotFound:
                blob = b""
            await self._apply(rec, results, blob, blog)
        except Exception:
            # Leave the lease in place: the message is tried again at that time.
            blog.exception("queue_crash_unrecorded")

    async def _attempt(self, rec: QueuedMessage, blog: Any) -> None:
        try:
            blob = self._store.get_blob(rec.blob_id)
        except NotFound:
            blog.error("queue_blob_missing")
            await self._store.queue_remove(rec.id)
            return
        message = await self._signed(blob, rec, blog)
        groups: dict[str, list[str]] = {}
        for r in rec.active:
            groups.setdefault(r.domain, []).append(r.address)
        request = _dsn_request(rec)
        outcome_lists = await asyncio.gather(
            *(self._deliver_group(d, rcpts, rec.reverse_path, message, request)
              for d, rcpts in groups.items())
        )
        results = {r.address: r for rs in outcome_lists for r in rs}
        await self._apply(rec, results, blob, blog)

    async def _signed(self, blob: bytes, rec: QueuedMessage, blog: Any) -> bytes:
        if self._dkim_keys is None:
            return blob
        domain = from_domain(blob)
        if domain is None:
            return blob
        keys = list(self._dkim_keys(domain))
        if not keys:
            return blob
        try:
            return await sign_async(blob, domain, keys) + blob
        except MailserverError as exc:
            blog.warning("dkim_sign_failed", error=str(exc))
            return blob

    async def _deliver_group(
        self, domain: str, rcpts: builtins.list[str], reverse_path: str, message: bytes,
        request: DsnRequest | None = None,
    ) -> builtins.list[RcptResult]:
        sem = self._per_domain.get(domain)
        if sem is None:
            sem = self._per_domain[domain] = asyncio.Semaphore(
                self.settings.max_connections_per_domain
            )
        async with sem, self._total:
            return await deliver_domain(
                self.settings, self._resolver, domain, reverse_path, rcpts, message,
                pool=self._pool, dsn=request,
            )

    async def _apply(
        self, rec: QueuedMessage, results: dict[str, RcptResult], blob: bytes, blog: Any
    ) -> None:
        now = self._clock()
        attempts = rec.attempts + 1
        retry_at = next_attempt(now, rec.created, attempts, self.settings.backoff,
                                self.settings.max_age, self.settings.jitter, self._rng)
        new: list[Recipient] = []
        for r in rec.recipients:
            res = results.get(r.address)
            if res is None:
                new.append(r)
                continue
            n = r.attempts + 1
            if res.outcome is Outcome.DELIVERED:
                status, reply = RcptStatus.DELIVERED, res.reply
                blog.info("delivered", rcpt=r.address, reply=res.reply)
            elif res.outcome is Outcome.PERMANENT or retry_at is None:
                reply = res.reply if res.outcome is Outcome.PERMANENT else (
                    f"{res.reply} (gave up after {attempts} attempts)")
                status = RcptStatus.FAILED
                blog.info("delivery_failed", rcpt=r.address, reply=reply)
            else:
                status, reply = RcptStatus.DEFERRED, res.reply
                blog.info("delivery_deferred", rcpt=r.address, reply=res.reply)
            new.append(dataclasses.replace(r, status=status, attempts=n, last_error=reply,
                                           remote_mta=res.remote_mta))
        failed_now = [r for r in new if r.status is RcptStatus.FAILED
                      and r.address in results and _wants(r, FAILURE)]
        if failed_now and rec.reverse_path:
            await self._send_dsn(rec, failed_now, "failed", blob, now)
        # RFC 3461 §5.2.2: "relayed" when the next hop took it but does not offer DSN.
        relayed_now = [r for r in new if r.status is RcptStatus.DELIVERED
                       and r.address in results and _wants(r, SUCCESS)
                       and not results[r.address].next_hop_dsn]
        if relayed_now and rec.reverse_path:
            await self._send_dsn(rec, relayed_now, "relayed", blob, now)
        updated = _replace(rec, recipients=tuple(new), attempts=attempts,
                           next_attempt=retry_at if retry_at is not None else now)
        if updated.done:
            await self._store.queue_remove(rec.id)
            blog.info("queue_done")
            return
        assert retry_at is not None  # no retry time: every recipient became final
        delay_warning = self.settings.delay_warning
        if (delay_warning is not None and not updated.warned and rec.reverse_path
                and now - rec.created >= delay_warning):
            deferred = [r for r in new if r.status is RcptStatus.DEFERRED and _wants(r, DELAY)]
            await self._send_dsn(rec, deferred, "delayed", blob, now)
            updated = _replace(updated, warned=True)
        try:
            await self._store.queue_put(rec.id, model.encode(updated), retry_at)
        except NotFound:  # deleted by an admin meanwhile
            pass

    async def _send_dsn(
        self, rec: QueuedMessage, rcpts: builtins.list[Recipient], action: str, blob: bytes, now: float
    ) -> None:
        """One DSN for ``rcpts`` to the reverse-path (never for a null one)."""
        if not rec.reverse_path or not rcpts:
            return
        report = dsn.build_dsn(
            reporting_mta=self.settings.hostname,
            reverse_path=rec.reverse_path,
            recipients=[
                dsn.DsnRecipient(r.address, action,
                                 dsn.status_of(r.last_error, action == "failed"),
                                 r.last_error, r.remote_mta,
                                 None if r.dsn is None else r.dsn.orcpt)
                for r in rcpts
            ],
            original=blob,
            arrival_date=rec.created,
            queue_id=rec.id,
            now=now,
            retry_until=rec.created + self.settings.max_age,
            envid=None if rec.dsn is None else rec.dsn.envid,
            return_full=rec.dsn is not None and rec.dsn.ret == "FULL",
        )
        sender = rec.reverse_path
        try:
            if self._deliver_local is not None and self._is_local is not None \
                    and self._is_local(sender):
                await self._deliver_local(report, sender)
            else:
                await self.enqueue("", [sender], report)
        except (MailserverError, ValueError) as exc:
            # E.g. the sender's mailbox is over quota.  Losing the report is
            # better than failing the round: its results (some recipients
            # delivered) would be forgotten and the message sent again.
            log.error("dsn_failed", queue_id=rec.id, action=action, error=str(exc))
            return
        log.info("dsn_sent", queue_id=rec.id, action=action, rcpts=len(rcpts))


def _wants(rcpt: Recipient, kind: str) -> bool:
    """Whether ``rcpt``'s NOTIFY (RFC 3461 §4.1; absent: FAILURE,DELAY) asks for ``kind``."""
    return kind in dsn_params.DEFAULT_NOTIFY if rcpt.dsn is None else rcpt.dsn.wants(kind)


def _dsn_request(rec: QueuedMessage) -> DsnRequest | None:
    """The message's DSN parameters to pass on (RFC 3461 §5.2.1), None when it had none."""
    rcpts = {r.address: r.dsn for r in rec.recipients if r.dsn is not None}
    if rec.dsn is None and not rcpts:
        return None
    return DsnRequest(rec.dsn or MailDsn(), rcpts)


def _decode_or_none(raw: bytes, queue_id: str | None = None) -> QueuedMessage | None:
    """``model.decode(raw)``, or None (logged) when the record is damaged or foreign."""
    try:
        return model.decode(raw)
    except Exception:  # json, unicode, key, type or value errors: all "unreadable"
        log.exception("queue_record_unreadable", queue_id=queue_id, size=len(raw))
        return None


def _replace(rec: QueuedMessage, **changes: Any) -> QueuedMessage:
    return dataclasses.replace(rec, **changes)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
