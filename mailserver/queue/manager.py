"""The queue manager: enqueue and the scheduler.

Life of a message: ``enqueue`` stores it (record + schedule entry + blob
reference, one synced commit) and wakes the scheduler.  The scheduler takes
due ids off the schedule index, *first* moves each one's schedule entry to
the time of the next retry (the lease: if we die during the attempt, the
message is due again then — at-least-once), then runs one round per message:
recipients grouped by domain, one connection per group, groups in parallel
under a total and a per-domain connection limit (``rounds.py``; what becomes
of each recipient is the pure ``outcome.decide``).  The round's results update
the record; a message with no recipients left is removed after its DSN (if
any) is durable.

Invariant: at most one round per message runs in this process
(``_inflight``); across processes, the store's lease decides
(``storage.QueueStore``): on LMDB one scheduler serves the store, on
PostgreSQL every node schedules and a message goes to whichever leases it.

A round that crashes (a bug) counts as a failed attempt (``rounds.py``).
Only a process that dies in every round (kill -9, out of memory) retries at
the lease time forever; the operator sees it in the log.

The scheduler itself never dies of an error: a pass that raises (the store
refusing the lease write, a bug) is logged with its traceback
(``queue_scheduler_error``) and the next pass waits a growing delay
(``ERROR_BACKOFF``), so a persistent fault neither kills delivery for good nor
spins.  A record that cannot be decoded (damaged, or written by a newer
version) is logged (``queue_record_unreadable``), skipped by this process and
rescheduled ``max_age`` later: the operator can inspect or delete it.

DSN extension (RFC 3461): a message keeps its MAIL's RET/ENVID and each
recipient its NOTIFY/ORCPT (``enqueue(dsn=...)``).  A next hop that offers
DSN gets them passed on (§5.2.1, in ``transaction``); reports follow NOTIFY
(``outcome``): a failure report only with FAILURE, a delay warning only with
DELAY (both the default when NOTIFY was not given), none for NEVER, and a
"relayed" report for SUCCESS when the next hop accepted but does not offer
DSN (§5.2.2; when it does, reporting success is its job).

Ids: a message keeps the id its SMTP transaction gave it (``ids.py``);
``enqueue`` draws one for a message of its own (a DSN).  ``stop`` closes the
sessions the rounds keep for reuse.

Admin actions (list, show, retry, flush, delete) are the admin service's
(``mailserver.admin``), over the store's queue tables; of the manager it only
asks what is the running scheduler's own business (``wake``, ``cancel``: the
``admin.QueueControl`` protocol, which this class meets structurally, so the
queue does not import the admin layer).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from mailserver.dns.resolver import Resolver
from mailserver.errors import MailserverError
from mailserver.protocol import queue_id as ids
from mailserver.protocol.dsn_params import DsnRequest, MailDsn
from mailserver.queue import model
from mailserver.queue.backoff import retry_delay
from mailserver.queue.client import valid_path
from mailserver.queue.model import QueuedMessage, Recipient
from mailserver.queue.requiretls import tls_required_no
from mailserver.queue.rounds import DeliverLocal, DeliveryRounds, KeysFor
from mailserver.queue.settings import OutboundSettings
from mailserver.queue.storage import QueueStore
from mailserver.queue.tlspolicy import NO_TLS_POLICY, OutboundTls

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

# Re-exported: the composition root's callbacks are typed with these.
__all__ = ["DeliverLocal", "KeysFor", "QueueManager"]


class QueueManager:
    """Owns the outbound queue of one store (``store``: ``storage.QueueStore``).

    ``resolver``: DNS, the process's one resolver (``app.build_resolver``).
    ``dkim_keys(domain)``: signing keys for a From domain ([] = do not sign).
    ``is_local(address)`` / ``deliver_local(message, address)``: where DSNs for
    local senders go (straight into the store); DSNs to remote senders are
    queued with the null reverse-path.  ``clock``: Unix seconds (tests).
    ``tls_policy``: MTA-STS policies and the TLS-RPT log (``app.build_queue``).
    """

    def __init__(
        self,
        store: QueueStore,
        settings: OutboundSettings,
        *,
        resolver: Resolver,
        dkim_keys: KeysFor | None = None,
        is_local: Callable[[str], Awaitable[bool]] | None = None,
        deliver_local: DeliverLocal | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        tls_policy: OutboundTls | None = None,
    ) -> None:
        self._store = store
        self.settings = settings
        self._resolver = resolver
        self._clock = clock
        self._rounds = DeliveryRounds(
            store, settings, self._resolver, enqueue=self.enqueue, dkim_keys=dkim_keys,
            is_local=is_local, deliver_local=deliver_local, clock=clock,
            rng=rng or random.Random(), tls_policy=tls_policy or NO_TLS_POLICY,
        )
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
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
        dsn: DsnRequest | None = None, queue_id: str | None = None,
        requiretls: bool = False,
    ) -> str:
        """Queue ``message`` for ``recipients``; durable (fsynced) when it returns.

        ``reverse_path`` "" is the null reverse-path (DSNs).  ``message`` is the
        exact bytes to send (CRLF lines, as received).  ``dsn``: the RFC 3461
        parameters given with MAIL and RCPT.  ``queue_id``: the message's id
        when the caller already gave it one (SMTP intake: the id of its
        ``Received:`` field and 250 reply, see ``ids``); None draws a fresh
        one.  ``requiretls``: MAIL carried REQUIRETLS (RFC 8689 §4.1): the
        message goes over verified TLS to a next hop offering REQUIRETLS, or
        bounces; without it a ``TLS-Required: No`` header field (§4.2.1) waives
        our TLS policy for the message.  Returns the queue id.
        Raises ValueError for no recipients, an address without "@", an
        address that cannot go on an SMTP command line (RFC 5321 §4.1.2: no
        spaces, angle brackets or control characters outside a quoted local
        part), or a ``queue_id`` that is not 1-64 ASCII letters and digits;
        RuntimeError (from the store) when ``queue_id`` is taken.
        """
        if queue_id is not None and not ids.VALID.fullmatch(queue_id):
            raise ValueError(f"not a queue id: {queue_id!r}")
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
        qid = ids.new_queue_id() if queue_id is None else queue_id
        rec = QueuedMessage(
            id=qid, reverse_path=reverse_path, created=now, blob_id=blob_id,
            size=len(message), next_attempt=now,
            recipients=tuple(
                Recipient(r, dsn=None if dsn is None else dsn.rcpts.get(r)) for r in rcpts),
            dsn=None if dsn is None or dsn.mail == MailDsn() else dsn.mail,
            requiretls=requiretls,
            # RFC 8689 §4.2.1: REQUIRETLS wins over the header field.
            tls_optional=not requiretls and tls_required_no(message),
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
        await self._rounds.close()

    # -- what the admin service may ask (``admin.QueueControl``) -------------------

    def wake(self) -> None:
        """Run a scheduler pass now (messages were made due: retry, flush)."""
        self._wake.set()

    async def cancel(self, queue_id: str) -> None:
        """Cancel the round in flight for ``queue_id``, if any, and wait until it
        has ended (its next attempt time was saved before it began)."""
        task = self._inflight.get(queue_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
        due = [q for q in await self._store.queue_due(now, BATCH)
               if q not in self._inflight and q not in self._unreadable]
        if due:
            await self._take(due, now)
        nxt = await self._store.queue_next_due()
        if len(due) >= BATCH:
            return
        timeout = RESCAN if nxt is None else nxt - self._clock()
        if timeout <= 0:
            # Something is due: a message that became due since ``due`` was
            # read (the reads take a moment, a round trip on PostgreSQL) gets
            # the next pass at once; if only in-flight ones are, a finishing
            # round wakes us (or the change feed, for other processes' changes).
            late = [q for q in await self._store.queue_due(self._clock(), BATCH)
                    if q not in self._inflight and q not in self._unreadable]
            if late:
                return
            timeout = RESCAN
        timeout = min(timeout, RESCAN)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _take(self, due: list[str], now: float) -> None:
        """Save each message's lease (next attempt) before starting its round.

        The rounds of the messages leased are started even when other leases
        failed; then the first failure is raised (the scheduler backs off).
        """
        leased: list[tuple[str, QueuedMessage]] = []

        async def lease(qid: str) -> None:
            raw = await self._store.queue_get(qid)
            if raw is None:
                return
            rec = _decode_or_none(raw, qid)
            if rec is None:
                await self._set_aside(qid, now)
                return
            until = now + retry_delay(rec.attempts + 1, self.settings.backoff)
            rec = _replace(rec, next_attempt=until)
            if not await self._store.queue_lease(qid, model.encode(rec), until, due_by=now):
                return  # held, deleted, or another node's since it was found due
            leased.append((qid, rec))

        outcomes = await asyncio.gather(*(lease(q) for q in due), return_exceptions=True)
        for qid, rec in leased:
            task = asyncio.create_task(self._rounds.run(rec), name=f"queue-{qid}")
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
