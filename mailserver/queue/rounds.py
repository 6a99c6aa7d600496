"""One delivery round of one queued message: attempt, decide, record, report.

The scheduler (``manager.py``) has already saved the message's lease (its
next attempt time) when it starts a round, so a round that dies with the
process is retried then.  A round: DKIM-sign the content (at delivery time,
so a key rotated while a message waits is picked up), group the recipients
still to deliver by domain, one connection per group (``client.py``), groups
in parallel under a total and a per-domain connection limit; then the pure
``outcome.decide`` says what becomes of each recipient, and the round carries
it out: DSNs first (durable before the record changes), then the record is
removed (done) or rewritten with its next attempt time.

A round that crashes (a bug: any exception escaping it) is logged with its
traceback (``queue_round_crashed``) and counted as a failed attempt with a
temporary "451 4.3.0" result for every recipient still to deliver, so the
backoff grows and the maximum age (measured from creation) still ends it
with a DSN.

Sessions that finished a transaction are kept in a ``ConnectionPool`` for
``settings.reuse_idle`` seconds, so a burst of messages to one destination
shares a connection; ``close`` closes them.

Every log line of a round carries the message's ``queue_id``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from mailserver import analytics
from mailserver.analytics import FlowEvent, Kind, domain_of, result_of
from mailserver.dkim.keys import DkimKey
from mailserver.dkim.sign import from_domain, sign_async
from mailserver.dns.resolver import Resolver
from mailserver.errors import MailserverError, NotFound
from mailserver.metrics import instruments
from mailserver.protocol.dsn_params import DsnRequest, MailDsn
from mailserver.queue import dsn, model
from mailserver.queue.backoff import next_attempt
from mailserver.queue.client import deliver_domain, new_pool
from mailserver.queue.model import QueuedMessage, Recipient
from mailserver.queue.outcome import Action, Outcome, RcptResult, decide
from mailserver.queue.requiretls import TlsDemand
from mailserver.queue.settings import OutboundSettings
from mailserver.queue.storage import QueueStore
from mailserver.queue.throttle import DestinationThrottle
from mailserver.queue.tlspolicy import NO_TLS_POLICY, OutboundTls

log = structlog.get_logger("mailserver.queue")

DeliverLocal = Callable[[bytes, str], Awaitable[None]]
KeysFor = Callable[[str], Sequence[DkimKey]]
#: ``enqueue(reverse_path, recipients, message)`` -> queue id (the DSNs to remote senders).
Enqueue = Callable[[str, Sequence[str], bytes], Awaitable[str]]

#: The log event of each recipient action.
_EVENTS = {
    Action.DELIVERED: "delivered",
    Action.RETRY: "delivery_deferred",
    Action.BOUNCE: "delivery_failed",
    Action.EXPIRE: "delivery_failed",
}

#: Mail-flow events of the decisions (a delivery is the ``attempt`` event already).
_FLOW = {Action.RETRY: Kind.DEFERRED, Action.BOUNCE: Kind.BOUNCED, Action.EXPIRE: Kind.EXPIRED}


class DeliveryRounds:
    """Runs delivery rounds for one store's queue (``run(rec)``, one per message at a time).

    ``dkim_keys(domain)``: signing keys for a From domain ([] = do not sign).
    ``is_local(address)`` / ``deliver_local(message, address)``: where DSNs
    for local senders go (straight into the store); DSNs to remote senders
    go through ``enqueue`` with the null reverse-path.  ``clock``: Unix
    seconds; ``rng``: the backoff's jitter.
    """

    def __init__(
        self,
        store: QueueStore,
        settings: OutboundSettings,
        resolver: Resolver,
        *,
        enqueue: Enqueue,
        dkim_keys: KeysFor | None,
        is_local: Callable[[str], Awaitable[bool]] | None,
        deliver_local: DeliverLocal | None,
        clock: Callable[[], float],
        rng: random.Random,
        tls_policy: OutboundTls = NO_TLS_POLICY,
    ) -> None:
        self._store = store
        self.settings = settings
        self._resolver = resolver
        self._enqueue = enqueue
        self._dkim_keys = dkim_keys
        self._is_local = is_local
        self._deliver_local = deliver_local
        self._clock = clock
        self._rng = rng
        self._tls_policy = tls_policy
        self._total = asyncio.Semaphore(settings.max_connections)
        #: Sessions per destination, halved and paused when it says 421/4.7.x.
        self.throttle = DestinationThrottle(settings.max_connections_per_domain)
        self._pool = new_pool(settings)

    async def close(self) -> None:
        """Close the pooled sessions (QUIT); the rounds can run again afterwards."""
        await self._pool.close()
        self._pool = new_pool(self.settings)

    async def run(self, rec: QueuedMessage) -> None:
        """One round for ``rec`` (already leased).  Raises only CancelledError."""
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
                blob = await self._store.get_blob(rec.blob_id)
            except NotFound:
                blob = b""
            await self._apply(rec, results, blob, blog)
        except Exception:
            # Leave the lease in place: the message is tried again at that time.
            blog.exception("queue_crash_unrecorded")

    async def _attempt(self, rec: QueuedMessage, blog: Any) -> None:
        try:
            blob = await self._store.get_blob(rec.blob_id)
        except NotFound:
            blog.error("queue_blob_missing")
            await self._store.queue_settle(rec.id, None)
            return
        if rec.bounce:  # an administrator returned it: no delivery, a DSN
            blog.info("queue_bounce", reply=rec.bounce)
            await self._apply(rec, {r.address: RcptResult(r.address, Outcome.PERMANENT,
                                                          rec.bounce)
                                    for r in rec.active}, blob, blog)
            return
        message = await self._signed(blob, blog)
        groups: dict[str, list[str]] = {}
        for r in rec.active:
            groups.setdefault(r.domain, []).append(r.address)
        request = _dsn_request(rec)
        tls = TlsDemand(rec.requiretls, rec.tls_optional)
        outcome_lists = await asyncio.gather(
            *(self._deliver_group(d, rcpts, rec.reverse_path, message, request, tls, blog,
                                  rec.created)
              for d, rcpts in groups.items())
        )
        results = {r.address: r for rs in outcome_lists for r in rs}
        await self._apply(rec, results, blob, blog)

    async def _signed(self, blob: bytes, blog: Any) -> bytes:
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
        self, domain: str, rcpts: list[str], reverse_path: str, message: bytes,
        request: DsnRequest | None, tls: TlsDemand, blog: Any, queued_at: float = 0.0,
    ) -> list[RcptResult]:
        throttle = self.throttle
        wait = throttle.paused(domain)
        if wait > 0:  # it asked us to slow down: no session until the pause ends
            blog.info("delivery_paused", domain=domain, seconds=int(wait))
            reply = (f"451 4.4.5 {domain} asked us to slow down; "
                     f"not tried for another {int(wait) + 1} s")
            return [RcptResult(r, Outcome.TEMPORARY, reply) for r in rcpts]
        await throttle.acquire(domain)
        results: list[RcptResult] = []
        try:
            async with self._total:
                started = time.perf_counter()
                results = await deliver_domain(
                    self.settings, self._resolver, domain, reverse_path, rcpts, message,
                    pool=self._pool, dsn=request, log=blog, tls=tls,
                    tls_policy=self._tls_policy,
                )
        finally:
            await throttle.release(domain, [r.reply for r in results],
                                   any(r.outcome is Outcome.DELIVERED for r in results))
        if throttle.paused(domain):
            blog.warning("destination_throttled", domain=domain,
                         sessions=throttle.limit(domain), pause_s=int(throttle.paused(domain)))
        m = instruments()
        m.outbound_attempt_seconds.observe(time.perf_counter() - started)
        for result in results:
            m.outbound_attempts.labels(result.outcome.value).inc()
        if analytics.enabled():
            now = time.time()
            for result in results:
                res = result_of(result.reply)
                analytics.emit(FlowEvent(
                    Kind.ATTEMPT, now, "out", domain, result=res, code=result.reply[:9],
                    reason=result.outcome.value, size=len(message),
                    latency=now - queued_at if res == "ok" and queued_at else None,
                    source=result.remote_mta))
        return results

    async def _apply(
        self, rec: QueuedMessage, results: dict[str, RcptResult], blob: bytes, blog: Any
    ) -> None:
        """Carry out ``outcome.decide``: log, send the DSNs, then remove or rewrite."""
        now = self._clock()
        retry_at = next_attempt(now, rec.created, rec.attempts + 1, self.settings.backoff,
                                self.settings.max_age, self.settings.jitter, self._rng)
        decision = decide(rec, results, now=now, retry_at=retry_at,
                          delay_warning=self.settings.delay_warning)
        for d in decision.rcpts:
            blog.info(_EVENTS[d.action], rcpt=d.address, reply=d.reply)
            kind = _FLOW.get(d.action)
            if kind is not None:
                analytics.emit(FlowEvent(kind, now, "out", domain_of(d.address),
                                         result=result_of(d.reply or ""),
                                         code=(d.reply or "")[:9], reason=_EVENTS[d.action]))
        # Reports first: once the record changes, the results they tell are forgotten.
        await self._send_dsn(rec, decision.failed, "failed", blob, now, blog)
        # RFC 3461 §5.2.2: "relayed" when the next hop took it but does not offer DSN.
        await self._send_dsn(rec, decision.relayed, "relayed", blob, now, blog)
        if decision.done:
            if await self._store.queue_settle(rec.id, None):
                blog.info("queue_done")
            else:
                blog.warning("queue_lease_lost")
            return
        await self._send_dsn(rec, decision.delayed, "delayed", blob, now, blog)
        updated = decision.record
        # A hold made while the round ran stays (``storage.QueueStore.queue_settle``).
        if not await self._store.queue_settle(rec.id, model.encode(updated),
                                              updated.next_attempt):
            # Deleted by an administrator meanwhile, or (several nodes) the
            # round outlived its lease and another node holds the message now.
            blog.info("queue_lease_lost")

    async def _send_dsn(
        self, rec: QueuedMessage, rcpts: Sequence[Recipient], action: str, blob: bytes,
        now: float, blog: Any,
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
            # RFC 8689 §5: the report of a REQUIRETLS message may travel in
            # clear, so it returns the header section only.
            return_full=rec.dsn is not None and rec.dsn.ret == "FULL" and not rec.requiretls,
        )
        sender = rec.reverse_path
        dsn_id = None
        try:
            if self._deliver_local is not None and self._is_local is not None \
                    and await self._is_local(sender):
                await self._deliver_local(report, sender)
            else:
                dsn_id = await self._enqueue("", [sender], report)
        except (MailserverError, ValueError) as exc:
            # E.g. the sender's mailbox is over quota.  Losing the report is
            # better than failing the round: its results (some recipients
            # delivered) would be forgotten and the message sent again.
            blog.error("dsn_failed", action=action, error=str(exc))
            return
        # ``dsn_id``: the report's own queue id when it was queued for a remote sender.
        blog.info("dsn_sent", action=action, rcpts=len(rcpts), dsn_id=dsn_id)


def _dsn_request(rec: QueuedMessage) -> DsnRequest | None:
    """The message's DSN parameters to pass on (RFC 3461 §5.2.1), None when it had none."""
    rcpts = {r.address: r.dsn for r in rec.recipients if r.dsn is not None}
    if rec.dsn is None and not rcpts:
        return None
    return DsnRequest(rec.dsn or MailDsn(), rcpts)
